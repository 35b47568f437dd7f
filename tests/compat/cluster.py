"""A real multi-process Weir cluster on loopback: N `weir server` processes,
each broker and controller (KRaft combined mode), started from
server.properties files written here."""

import os
import shutil
import tempfile
import time

import confluent_kafka.admin

from harness import Broker, free_port


class Cluster:
    def __init__(self, nodes=3, overrides=None):
        self.root = tempfile.mkdtemp(prefix="weir-cluster-")
        self.ids = list(range(1, nodes + 1))
        ctrl_ports = {i: free_port() for i in self.ids}
        voters = ",".join(f"{i}@127.0.0.1:{ctrl_ports[i]}" for i in self.ids)
        self.nodes = {}
        for i in self.ids:
            data = os.path.join(self.root, f"node{i}")
            os.makedirs(data)
            port = free_port()
            props = {
                "node.id": i,
                "process.roles": "broker,controller",
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl_ports[i]}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "log.dirs": data,
                # Fail over in seconds, not Kafka's 9 s / 30 s defaults.
                "broker.session.timeout.ms": 3000,
                "broker.heartbeat.interval.ms": 300,
                "replica.lag.time.max.ms": 5000,
            }
            props.update(overrides or {})
            path = os.path.join(self.root, f"node{i}.properties")
            with open(path, "w") as f:
                for k, v in props.items():
                    f.write(f"{k}={v}\n")
            self.nodes[i] = Broker(data_dir=data, port=port, config_path=path)

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout=60):
        for n in self.nodes.values():
            n.start()
        self.wait_for_brokers(len(self.ids), timeout)
        return self

    def wait_for_brokers(self, count, timeout=60):
        """Wait until Metadata lists `count` live brokers."""
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.time() + timeout
        seen = None
        while time.time() < deadline:
            try:
                seen = admin.list_topics(timeout=2).brokers
                if len(seen) == count:
                    return
            except Exception:  # noqa: BLE001 - the cluster is still forming
                pass
            time.sleep(0.2)
        raise AssertionError(f"{count} brokers never registered (saw {seen}):\n{self.log_tails()}")

    def partition_leader(self, topic, partition=0, timeout=30):
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.time() + timeout
        while time.time() < deadline:
            md = admin.list_topics(topic=topic, timeout=5)
            t = md.topics.get(topic)
            if t and not t.error and partition in t.partitions:
                p = t.partitions[partition]
                if p.leader >= 0:
                    return p.leader, list(p.replicas), list(p.isrs)
            time.sleep(0.2)
        raise AssertionError(f"{topic}-{partition} has no leader:\n{self.log_tails()}")

    def log_tails(self, n=25):
        return "\n".join(f"--- node {i}\n{node.log_tail(n)}" for i, node in self.nodes.items())

    def stop(self):
        codes = {}
        for i, n in self.nodes.items():
            codes[i] = n.stop()
        return codes

    def cleanup(self):
        for n in self.nodes.values():
            try:
                n.stop()
            except Exception:  # noqa: BLE001 - best effort teardown
                if n.proc and n.proc.poll() is None:
                    n.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
