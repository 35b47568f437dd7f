// kafkajs 2.2 against weir: admin create and metadata, keyed produce with acks=-1
// (kafkajs' DefaultPartitioner is Java-compatible murmur2), watermarks, and a
// consumer group reading everything back and committing.
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

  // Consume everything back through a consumer group (kafkajs' only way).
  const consumer = kafka.consumer({ groupId: `g-${topic}`, sessionTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const consumed = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${consumed.length} in 30 s`)), 30000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        consumed.push({ partition, offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() });
        if (consumed.length >= Number(count)) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  const committed = await admin.fetchOffsets({ groupId: `g-${topic}`, topics: [topic] });
  await admin.disconnect();
  console.log(JSON.stringify({
    partitions: meta.topics[0].partitions.length,
    errors: acks.map(a => a.errorCode),
    high: offsets.map(o => Number(o.high)).reduce((a, b) => a + b, 0),
    consumed,
    committed: committed[0].partitions.map(p => Number(p.offset)).reduce((a, b) => a + b, 0),
  }));
}

main().catch(e => { console.error(e.stack || String(e)); process.exit(1); });
