package event

import (
	"testing"
)

// FuzzDecrypt checks that Decrypt accepts exactly the canonical ciphertexts
// of its owner key: whatever it accepts, Encrypt with the same random prefix
// gives back byte for byte (so the base64, the block count, the padding, the
// length field and the owner key were all exactly as Encrypt writes them),
// and nothing makes it panic. asRaw encrypts the fuzzed bytes as whole AES
// blocks first, so that the fuzzer reaches the checks behind the decryption;
// otherwise they are the base64 text itself.
func FuzzDecrypt(f *testing.F) {
	v := vectors[1]
	c := v.crypto(f)
	f.Add([]byte(v.encrypt), false)
	f.Add([]byte(vectors[0].encrypt), false)
	f.Add(decryptRaw(f, c, v.encrypt), true)
	f.Add(decryptRaw(f, c, c.Encrypt(nil)), true)
	f.Add([]byte{}, true)
	f.Add(make([]byte, 32), true)
	f.Fuzz(func(t *testing.T, data []byte, asRaw bool) {
		enc := string(data)
		if asRaw {
			enc = sealRaw(t, c, data[:len(data)/16*16])
		}
		plain, err := c.Decrypt(enc)
		if err != nil {
			if plain != nil {
				t.Fatalf("Decrypt returned a plaintext with its error %v", err)
			}
			return
		}
		raw := decryptRaw(t, c, enc)
		var random [randomLength]byte
		copy(random[:], raw)
		if again := c.encrypt(random, plain); again != enc {
			t.Fatalf("Decrypt accepted a ciphertext that is not canonical:\n %s\nEncrypt gives\n %s", enc, again)
		}
	})
}
