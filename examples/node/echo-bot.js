// Echo bot for seed 002: the same user sends three messages rapidly and the
// bot handles them concurrently. The session's lock in sessiond decides:
//   node echo-bot.js drop     the 1st is answered, the 2nd and 3rd get "busy"
//   node echo-bot.js inorder  all three are answered, in the order they came
'use strict';
const { Client, LockHeld } = require('@sessiond/client');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Returns handleMessage(userId, text), which resolves with the reply to send.
function echoBot(client, { mode, thinkMs = 300 }) {
  const waitMs = mode === 'inorder' ? 30_000 : 0; // 0 = try once; > 0 = FIFO queue
  return async function handleMessage(userId, text) {
    try {
      return await client.withLock(userId, async (session) => {
        const history = JSON.parse(session.fields.history?.toString() ?? '[]');
        await sleep(thinkMs); // the model thinks
        history.push(text);
        session.set('history', JSON.stringify(history));
        return `echo #${history.length}: ${text}`;
      }, { leaseMs: 5_000, waitMs });
    } catch (err) {
      if (err instanceof LockHeld) return `busy: still answering you, please send "${text}" again`;
      throw err;
    }
  };
}

// The scenario: three messages 100 ms apart, all handled at once.
async function main(mode = 'drop', target = '127.0.0.1:50051', userId = `user-${process.pid}`) {
  const client = new Client(target);
  await client.ready();
  const handleMessage = echoBot(client, { mode });
  const messages = ['What is diabetes?', 'Actually, tell me about cancer', 'Never mind, explain heart disease'];
  const replies = await Promise.all(messages.map(async (text, i) => {
    await sleep(100 * i);
    return handleMessage(userId, text);
  }));
  messages.forEach((text, i) => console.log(`${text} -> ${replies[i]}`));
  client.close();
}

module.exports = { echoBot };
if (require.main === module) {
  main(...process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
