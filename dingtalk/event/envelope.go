package event

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/url"
)

// Query parameter names of a push. DingTalk has used both spellings of
// each; a receiver accepts either.
const (
	ParamSignature    = "signature"
	ParamMsgSignature = "msg_signature"
	ParamTimestamp    = "timestamp"
	ParamTimeStamp    = "timeStamp"
	ParamNonce        = "nonce"
)

// successPlaintext is what an answer that acknowledges a push encrypts.
const successPlaintext = "success"

// ErrSignature is an envelope whose signature is not the token's.
var ErrSignature = errors.New("event envelope's signature does not match")

// Envelope is one signed, encrypted message in either direction. Its JSON
// is the shape of the answer to a push; a push carries the same four
// values as query parameters (Query) and a body (Body).
type Envelope struct {
	Signature string `json:"msg_signature"`
	Timestamp string `json:"timeStamp"` // milliseconds since the epoch
	Nonce     string `json:"nonce"`
	Encrypt   string `json:"encrypt"`
}

// Seal encrypts plaintext and signs it with timestamp and nonce.
func (c *Crypto) Seal(plaintext []byte, timestamp, nonce string) Envelope {
	encrypt := c.Encrypt(plaintext)
	return Envelope{
		Signature: Signature(c.token, timestamp, nonce, encrypt),
		Timestamp: timestamp,
		Nonce:     nonce,
		Encrypt:   encrypt,
	}
}

// Success is the answer DingTalk expects to a push it should consider
// delivered (the check_url handshake included): the encrypted "success".
func (c *Crypto) Success(timestamp, nonce string) Envelope {
	return c.Seal([]byte(successPlaintext), timestamp, nonce)
}

// Open checks e's signature and returns its plaintext.
func (c *Crypto) Open(e Envelope) ([]byte, error) {
	if !c.SignatureMatches(e.Signature, e.Timestamp, e.Nonce, e.Encrypt) {
		return nil, ErrSignature
	}
	return c.Decrypt(e.Encrypt)
}

// IsSuccess reports whether plaintext is the "success" of an answer.
func IsSuccess(plaintext []byte) bool { return string(plaintext) == successPlaintext }

// Query returns the push's query parameters, spelled as DingTalk spells
// them today: msg_signature, timestamp, nonce.
func (e Envelope) Query() url.Values {
	return url.Values{
		ParamMsgSignature: {e.Signature},
		ParamTimestamp:    {e.Timestamp},
		ParamNonce:        {e.Nonce},
	}
}

// Body returns the push's body: {"encrypt": "..."}.
func (e Envelope) Body() []byte {
	body, _ := json.Marshal(PushBody{Encrypt: e.Encrypt}) // a struct of one string always encodes
	return body
}

// PushBody is the JSON body of a push.
type PushBody struct {
	Encrypt string `json:"encrypt"`
}

// NewNonce returns a random nonce for an envelope: 16 letters and digits.
func NewNonce() string {
	return rand.Text()[:16]
}

// OpenAnswer checks and decrypts the JSON answer to a push.
func (c *Crypto) OpenAnswer(body []byte) ([]byte, error) {
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, errors.New("event answer is not an envelope's JSON")
	}
	return c.Open(e)
}
