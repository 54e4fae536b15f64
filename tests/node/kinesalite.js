// Starts kinesalite on a free loopback port (its CLI listens on every interface) and prints the URL it serves.
// Streams become ACTIVE at once and splits complete at once, so tests do not wait on emulated delays.
const kinesalite = require('kinesalite');

const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 200 });
server.listen(0, '127.0.0.1', () => {
  console.log(`kinesalite listening on http://127.0.0.1:${server.address().port}`);
});
