// Package event implements DingTalk's event subscription crypto, the
// scheme of the HTTP pushes DingTalk sends for contacts, approvals,
// calendars and other events: the SHA-1 signature over the sorted token,
// timestamp, nonce and ciphertext, and the AES-256-CBC envelope around the
// event's JSON, which ends with the owner key (the AppKey of an internal
// app, a suite key, or a corp id).
//
// DingTalk's own samples differ on details; this package follows what
// DingTalk sends and accepts: timestamps in milliseconds, PKCS#7 padding to
// 32-byte blocks (not AES's 16), the IV being the first 16 bytes of the key.
// Decryption checks every length it reads, so a malformed ciphertext is an
// error, never a panic or a plaintext.
//
// It does not import Caddy: gateways, bot backends, command-line tools and
// tests use it alike.
package event
