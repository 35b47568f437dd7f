"""Shared helpers for the compatibility tests: start and stop a real `weir server`
process on a free loopback port, and Kafka's murmur2 partitioner in plain Python
(an independent implementation, cross-checked against kafka-python's)."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

WEIR = os.environ.get("WEIR_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "weir"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One `weir server` process with its own data directory."""

    def __init__(self, data_dir=None, port=None, extra_args=(), config_path=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="weir-compat-")
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        if config_path:
            self.extra_args = ["--config", config_path] + self.extra_args
        self.proc = None
        self.log_path = os.path.join(self.data_dir + ".log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=30):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [WEIR, "server", "--data-dir", self.data_dir, "--listen", self.bootstrap]
                + self.extra_args,
                stdout=log,
                stderr=log,
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weir server exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"weir server did not listen within {timeout}s:\n{self.log_tail()}")

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout=30):
        """SIGTERM and wait: a clean shutdown must exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("weir server did not stop on SIGTERM")

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no log)"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        try:
            os.remove(self.log_path)
        except OSError:
            pass


class BrokerTestCase(unittest.TestCase):
    """One broker shared by the tests of a class."""

    broker = None

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker().start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        code = cls.broker.stop()
        log = cls.broker.log_tail()
        cls.broker.cleanup()
        if code not in (0, None):
            raise AssertionError(f"weir server exited {code} on SIGTERM:\n{log}")
        if "panicked" in log:
            raise AssertionError(f"weir server panicked:\n{log}")

    def weir(self, *args, stdin=None, check=True, timeout=60):
        r = subprocess.run(
            [WEIR, *args], input=stdin, capture_output=True, timeout=timeout
        )
        if check and r.returncode != 0:
            self.fail(f"weir {' '.join(args)} exited {r.returncode}: {r.stderr.decode()}")
        return r

    def kcat(self, *args, stdin=None, timeout=60):
        r = subprocess.run(
            ["kcat", "-b", self.bootstrap, *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            self.fail(f"kcat {' '.join(args)} exited {r.returncode}: {r.stderr.decode()}")
        return r.stdout

    def create_topic(self, name, partitions=1, configs=()):
        args = ["topics", "--bootstrap-server", self.bootstrap, "--create", "--topic", name,
                "--partitions", str(partitions), "--replication-factor", "1"]
        for c in configs:
            args += ["--config", c]
        self.weir(*args)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), 32-bit."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i: 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def kafka_partition(key: bytes, partitions: int) -> int:
    """Where a Java (or librdkafka murmur2_random) producer puts a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
