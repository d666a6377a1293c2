// Echo bot for seed 002: the same user sends three messages rapidly and the
// bot handles them concurrently. The session's lock in sessiond decides:
//   node echo-bot.js drop      the 1st is answered, the 2nd and 3rd get "busy"
//   node echo-bot.js inorder   all three are answered, in the order they came
//   node echo-bot.js latest    the 1st is answered, then the 2nd and 3rd as one
//   node echo-bot.js debounce  all three are answered as one, once the user paused
//   node echo-bot.js dedupe    each message is delivered twice, answered once
'use strict';
const { Client, LockHeld, Superseded } = require('@sessiond/client');

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

// Modes latest and debounce: only the newest message of a burst is answered,
// together with the ones it superseded (as soon as the lock is free, or once
// the user paused for a second).
function burstBot(client, { mode, thinkMs = 1_000 }) {
  const turn = mode === 'debounce' ? { policy: 'DEBOUNCE', debounceMs: 1_000 } : { policy: 'LATEST_WINS' };
  return async function handleMessage(userId, text) {
    let lock;
    try {
      lock = await client.lock(userId, { leaseMs: 5_000, waitMs: 30_000, ...turn, payload: text });
    } catch (err) {
      if (err instanceof Superseded) return '(answered with the next message)';
      throw err;
    }
    try {
      const burst = [...lock.supersededPayloads.map(String), text]; // oldest first
      await sleep(thinkMs); // the model thinks, once for the whole burst
      return `echo (${burst.length}): ${burst.join(' / ')}`;
    } finally {
      await client.unlock(userId, lock.lockToken);
    }
  };
}

// Mode dedupe: the platform delivers an event again when its acknowledgement
// was late. Keyed by the event id, the second delivery's lock is the first
// one's grant (replayed), so the bot answers each event once.
function dedupeBot(client, { thinkMs = 300 } = {}) {
  return async function handleEvent(userId, eventId, text) {
    const lock = await client.lock(userId, { leaseMs: 5_000, waitMs: 30_000, idempotencyKey: eventId });
    if (lock.replayed) return null; // another delivery of this event has the turn
    const history = JSON.parse(lock.session?.fields.history?.toString() ?? '[]');
    await sleep(thinkMs); // the model thinks
    history.push(text);
    await client.update(userId, {
      set: { history: JSON.stringify(history) }, lockToken: lock.lockToken, releaseLock: true,
    });
    return `echo #${history.length}: ${text}`;
  };
}

// The scenario: three messages 100 ms apart, all handled at once.
async function main(mode = 'drop', target = '127.0.0.1:50051', userId = `user-${process.pid}`) {
  const client = new Client(target);
  await client.ready();
  const messages = ['What is diabetes?', 'Actually, tell me about cancer', 'Never mind, explain heart disease'];
  let replies;
  if (mode === 'dedupe') {
    const handleEvent = dedupeBot(client);
    replies = await Promise.all(messages.map(async (text, i) => {
      await sleep(100 * i);
      const both = await Promise.all([0, 1].map(() => handleEvent(userId, `evt-${i}`, text)));
      return `${both.find((r) => r !== null)} (${both.filter((r) => r === null).length} duplicate skipped)`;
    }));
  } else {
    const handleMessage = ['latest', 'debounce'].includes(mode) ? burstBot(client, { mode }) : echoBot(client, { mode });
    replies = await Promise.all(messages.map(async (text, i) => {
      await sleep(100 * i);
      return handleMessage(userId, text);
    }));
  }
  messages.forEach((text, i) => console.log(`${text} -> ${replies[i]}`));
  client.close();
}

module.exports = { echoBot, burstBot, dedupeBot };
if (require.main === module) {
  main(...process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
