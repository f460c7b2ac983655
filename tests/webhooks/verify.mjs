// Reads {"secret", "headers": {...}, "body": "<raw body>"} lines on stdin and verifies each with the
// standardwebhooks package (an implementation independent of linkvault). Prints one JSON result per line.
import { Webhook } from 'standardwebhooks';
import { createInterface } from 'node:readline';

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { secret, headers, body } = JSON.parse(line);
  try {
    const payload = new Webhook(secret).verify(body, headers);
    console.log(JSON.stringify({ ok: true, type: payload.type ?? null }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err && err.message || err) }));
  }
}
