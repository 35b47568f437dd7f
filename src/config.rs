//! Server configuration (placeholder: filled in by the broker work)
