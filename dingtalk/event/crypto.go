package event

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// AESKeyLength is the length of an aes_key as DingTalk's developer console
// shows it: 43 characters of base64 without the final "=".
const AESKeyLength = 43

// Sizes in the plaintext and its padding.
const (
	randomLength = 16 // the random prefix
	lengthLength = 4  // the big-endian length of the JSON after it
	// padBlock is the block size DingTalk pads to: twice AES's. A padding
	// to 16 bytes, as DingTalk's Go sample writes, is refused by DingTalk.
	padBlock = 32
)

// Errors of Decrypt. They never contain a key, a ciphertext or a plaintext.
var (
	// ErrMalformed is a ciphertext that is not base64, not a whole number
	// of blocks, badly padded, or whose length field points beyond its data.
	ErrMalformed = errors.New("event ciphertext is malformed")
	// ErrOwnerKey is a plaintext that ends with another owner key: it was
	// encrypted for another app, suite or corp with the same aes_key.
	ErrOwnerKey = errors.New("event plaintext is for another owner key")
)

// Crypto signs, encrypts and decrypts the events of one subscription: one
// token, aes_key and owner key. It is safe for concurrent use.
type Crypto struct {
	token    string
	block    cipher.Block
	iv       []byte
	ownerKey string
}

// New returns the Crypto for a subscription. aesKey is the 43-character
// key of the developer console. Errors never contain the token or the key.
func New(token, aesKey, ownerKey string) (*Crypto, error) {
	if token == "" {
		return nil, errors.New("event: the token is empty")
	}
	if ownerKey == "" {
		return nil, errors.New("event: the owner key is empty")
	}
	if len(aesKey) != AESKeyLength {
		return nil, fmt.Errorf("event: the aes_key has %d characters instead of %d", len(aesKey), AESKeyLength)
	}
	key, err := base64.StdEncoding.DecodeString(aesKey + "=")
	if err != nil {
		return nil, errors.New("event: the aes_key is not base64")
	}
	block, err := aes.NewCipher(key) // 32 bytes: AES-256
	if err != nil {
		return nil, errors.New("event: the aes_key is not an AES-256 key")
	}
	return &Crypto{token: token, block: block, iv: key[:aes.BlockSize], ownerKey: ownerKey}, nil
}

// OwnerKey returns the owner key that plaintexts end with.
func (c *Crypto) OwnerKey() string { return c.ownerKey }

// Signature computes DingTalk's event signature: the lower-case hex SHA-1
// of token, timestamp, nonce and encrypt, sorted as strings and joined.
func Signature(token, timestamp, nonce, encrypt string) string {
	parts := []string{token, timestamp, nonce, encrypt}
	slices.Sort(parts)
	h := sha1.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SignatureMatches reports, in constant time, whether signature is the
// signature of timestamp, nonce and encrypt under the token.
func (c *Crypto) SignatureMatches(signature, timestamp, nonce, encrypt string) bool {
	want := Signature(c.token, timestamp, nonce, encrypt)
	return subtle.ConstantTimeCompare([]byte(want), []byte(signature)) == 1
}

// Decrypt returns the JSON inside encrypt. It fails with ErrMalformed
// unless encrypt is canonical base64 of whole 32-byte blocks whose
// plaintext is correctly padded and long enough for the length field's
// JSON, and with ErrOwnerKey unless the plaintext ends with the owner key.
// It does not look at the JSON.
func (c *Crypto) Decrypt(encrypt string) ([]byte, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(encrypt)
	if err != nil || len(raw) == 0 || len(raw)%padBlock != 0 {
		return nil, ErrMalformed
	}
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(raw, raw)
	pad := int(raw[len(raw)-1])
	if pad < 1 || pad > padBlock {
		return nil, ErrMalformed
	}
	for _, b := range raw[len(raw)-pad:] {
		if int(b) != pad {
			return nil, ErrMalformed
		}
	}
	content := raw[:len(raw)-pad]
	if len(content) < randomLength+lengthLength {
		return nil, ErrMalformed
	}
	n := binary.BigEndian.Uint32(content[randomLength:])
	rest := content[randomLength+lengthLength:]
	if uint64(n) > uint64(len(rest)) {
		return nil, ErrMalformed
	}
	if subtle.ConstantTimeCompare(rest[n:], []byte(c.ownerKey)) != 1 {
		return nil, ErrOwnerKey
	}
	return rest[:n:n], nil
}

// Encrypt returns plaintext encrypted for the owner key, behind 16 fresh
// random bytes, as DingTalk encrypts events and expects replies.
func (c *Crypto) Encrypt(plaintext []byte) string {
	var random [randomLength]byte
	_, _ = rand.Read(random[:]) // never fails: crypto/rand panics instead
	return c.encrypt(random, plaintext)
}

// encrypt is Encrypt with the random prefix given, which the test vectors need.
func (c *Crypto) encrypt(random [randomLength]byte, plaintext []byte) string {
	size := randomLength + lengthLength + len(plaintext) + len(c.ownerKey)
	pad := padBlock - size%padBlock // 1 to 32: a whole block when size is a multiple
	buf := make([]byte, 0, size+pad)
	buf = append(buf, random[:]...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(plaintext)))
	buf = append(buf, plaintext...)
	buf = append(buf, c.ownerKey...)
	for range pad {
		buf = append(buf, byte(pad))
	}
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf)
}
