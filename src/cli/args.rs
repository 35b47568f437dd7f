//! A small flag parser shared by the subcommands: `--name value`,
//! `--name=value`, repeatable flags and switches, in Kafka tools' style.
//! Every mistake is a `CliError` with one line of text.

use std::collections::BTreeMap;

/// A CLI failure: printed as `error: <message>`, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }
}

impl From<crate::client::ClientError> for CliError {
    fn from(e: crate::client::ClientError) -> Self {
        CliError(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag`, no value.
    Switch,
    /// `--flag value`, at most once.
    Value,
    /// `--flag value`, any number of times.
    Multi,
}

#[derive(Debug, Default)]
pub struct Parsed {
    values: BTreeMap<String, Vec<String>>,
    /// `--help` was given.
    pub help: bool,
}

impl Parsed {
    pub fn has(&self, flag: &str) -> bool {
        self.values.contains_key(flag)
    }

    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .get(flag)
            .and_then(|v| v.first())
            .map(|s| s.as_str())
    }

    pub fn values(&self, flag: &str) -> &[String] {
        self.values.get(flag).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn required(&self, flag: &str) -> Result<&str, CliError> {
        self.value(flag)
            .ok_or_else(|| CliError::new(format!("missing required option --{flag}")))
    }

    /// A numeric flag, `default` when absent.
    pub fn number<T: std::str::FromStr>(&self, flag: &str, default: T) -> Result<T, CliError> {
        match self.value(flag) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| CliError::new(format!("--{flag} expects a number, got '{v}'"))),
        }
    }

    /// `k=v` pairs from a repeatable flag (e.g. `--property print.key=true`).
    pub fn pairs(&self, flag: &str) -> Result<Vec<(String, String)>, CliError> {
        self.values(flag)
            .iter()
            .map(|s| {
                split_pair(s)
                    .ok_or_else(|| CliError::new(format!("--{flag} expects key=value, got '{s}'")))
            })
            .collect()
    }
}

pub fn split_pair(s: &str) -> Option<(String, String)> {
    let (k, v) = s.split_once('=')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
}

/// Parse `args` against `spec` (flag names without `--`).
pub fn parse(args: &[String], spec: &[(&str, Kind)]) -> Result<Parsed, CliError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--help" || arg == "-h" {
            parsed.help = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(CliError::new(format!("unexpected argument '{arg}'")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let kind = spec
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| CliError::new(format!("unknown option --{name}")))?;
        let value = match kind {
            Kind::Switch => {
                if inline.is_some() {
                    return Err(CliError::new(format!("--{name} takes no value")));
                }
                String::new()
            }
            Kind::Value | Kind::Multi => match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| CliError::new(format!("--{name} needs a value")))?;
                    i += 1;
                    v.clone()
                }
            },
        };
        let slot = parsed.values.entry(name.to_string()).or_default();
        if kind == Kind::Value && !slot.is_empty() {
            return Err(CliError::new(format!("--{name} given more than once")));
        }
        slot.push(value);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    const SPEC: &[(&str, Kind)] = &[
        ("topic", Kind::Value),
        ("create", Kind::Switch),
        ("config", Kind::Multi),
        ("partitions", Kind::Value),
    ];

    #[test]
    fn parses_values_switches_and_repeats() {
        let p = parse(
            &args("--create --topic t --config a=1 --config=b=2 --partitions 3"),
            SPEC,
        )
        .unwrap();
        assert!(p.has("create"));
        assert_eq!(p.value("topic"), Some("t"));
        assert_eq!(
            p.pairs("config").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(p.number("partitions", 1).unwrap(), 3);
    }

    #[test]
    fn errors_are_one_line() {
        for (input, want) in [
            ("--nope", "unknown option --nope"),
            ("--topic", "--topic needs a value"),
            ("stray", "unexpected argument 'stray'"),
            ("--topic a --topic b", "--topic given more than once"),
            ("--create=1", "--create takes no value"),
        ] {
            let e = parse(&args(input), SPEC).unwrap_err();
            assert_eq!(e.0, want);
            assert!(!e.0.contains('\n'));
        }
        let p = parse(&args("--partitions x --config novalue"), SPEC).unwrap();
        assert!(p.number::<i32>("partitions", 1).is_err());
        assert!(p.pairs("config").is_err());
        assert!(p.required("topic").is_err());
    }
}
