// A DingTalk bot backend behind caddy-dingtalk: Node's http module, no
// dependencies.
//
// Caddy's dingtalk handler verified each callback's timestamp and sign before
// passing it on, and this server listens on loopback only, so it trusts what
// arrives: it reads the callback's JSON body and answers with a DingTalk text
// message that @s the sender. X-Dingtalk-Bot names the robot the callback is
// for; Caddy sets it and no client can forge it.
//
//     BACKEND_ADDR=127.0.0.1:9000 node examples/node/backend.js
'use strict';

const http = require('node:http');

// Keep it on loopback: whatever reaches this server is trusted.
const addr = process.env.BACKEND_ADDR || '127.0.0.1:9000';

// answer returns the DingTalk text message answering message, @-mentioning
// its sender.
function answer(message, bot) {
  // In a group, DingTalk leaves a space where it removed "@robot".
  const got = message.msgtype === 'text'
    ? ((message.text || {}).content || '').trim()
    : `[${message.msgtype}]`;
  const reply = {
    msgtype: 'text',
    text: { content: `Hi ${message.senderNick || ''}, bot ${bot} (Node.js) got: ${got}` },
  };
  // An @ renders only when the text names the id too. External users, and
  // everyone while the robot is not published, have no staff id: then
  // DingTalk's own user id is the one to @.
  if (message.senderStaffId) {
    reply.at = { atUserIds: [message.senderStaffId] };
    reply.text.content += ` @${message.senderStaffId}`;
  } else if (message.senderId) {
    reply.at = { atDingtalkIds: [message.senderId] };
    reply.text.content += ` @${message.senderId}`;
  }
  return reply;
}

const server = http.createServer((req, res) => {
  // Caddy's max_body (1MiB by default) bounds what arrives.
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let message;
    try {
      message = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not a DingTalk callback\n');
      return;
    }
    const body = JSON.stringify(answer(message, req.headers['x-dingtalk-bot'] || ''));
    res.writeHead(200, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  });
});

const colon = addr.lastIndexOf(':');
server.listen(Number(addr.slice(colon + 1)), addr.slice(0, colon), () => {
  console.log(`Node.js bot backend on http://${addr}`);
});
