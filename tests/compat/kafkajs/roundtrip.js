// kafkajs 2.2 against weir: admin create and metadata, keyed produce with acks=-1
// (kafkajs' DefaultPartitioner is Java-compatible murmur2), watermarks.
// Reading back is done by the Python test with kcat, so placement is checked by
// an independent client. Usage: node roundtrip.js BOOTSTRAP TOPIC COUNT
const { Kafka, logLevel, Partitioners } = require('kafkajs');

async function main() {
  const [bootstrap, topic, count] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'weir-compat', brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < Number(count); i++) messages.push({ key: `k${i}`, value: `v${i}` });
  const acks = await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();

  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  console.log(JSON.stringify({
    partitions: meta.topics[0].partitions.length,
    errors: acks.map(a => a.errorCode),
    high: offsets.map(o => Number(o.high)).reduce((a, b) => a + b, 0),
  }));
}

main().catch(e => { console.error(e.stack || String(e)); process.exit(1); });
