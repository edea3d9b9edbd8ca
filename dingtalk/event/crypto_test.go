package event

import (
	"bytes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// vector is one of DingTalk's published examples (docs/protocol notes §5, §6).
type vector struct {
	name                                 string
	token, aesKey, ownerKey              string
	timestamp, nonce, signature, encrypt string
	plaintext                            string
}

var vectors = []vector{
	{
		name: "DingTalk's debug page", token: "123456", aesKey: "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
		ownerKey: "suite4xxxxxxxxxxxxxxx", timestamp: "1445827045067", nonce: "nEXhMP4r",
		signature: "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
		encrypt:   "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==",
		plaintext: `{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}`,
	},
	{
		name: "DingTalk-Callback-Crypto's Python sample", token: "mryue", aesKey: "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
		ownerKey: "ding6ccabc44d2c8d38b", timestamp: "1608001896814", nonce: "WL4PK6yA",
		signature: "03044561471240d4a14bb09372dfcfd4fd0e40cb",
		encrypt:   "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3",
		plaintext: `{"EventType":"check_url"}`,
	},
}

func (v vector) crypto(t testing.TB) *Crypto {
	t.Helper()
	c, err := New(v.token, v.aesKey, v.ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVectorsSignature(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			if got := Signature(v.token, v.timestamp, v.nonce, v.encrypt); got != v.signature {
				t.Errorf("Signature = %s, want %s", got, v.signature)
			}
			c := v.crypto(t)
			if !c.SignatureMatches(v.signature, v.timestamp, v.nonce, v.encrypt) {
				t.Error("SignatureMatches refuses the vector")
			}
			for _, bad := range []string{strings.ToUpper(v.signature), v.signature[:39], v.signature + "0", ""} {
				if c.SignatureMatches(bad, v.timestamp, v.nonce, v.encrypt) {
					t.Errorf("SignatureMatches accepts %q", bad)
				}
			}
			// Seconds instead of milliseconds, as DingTalk's Go sample signs, is another signature.
			if c.SignatureMatches(v.signature, v.timestamp[:10], v.nonce, v.encrypt) {
				t.Error("SignatureMatches accepts the timestamp in seconds")
			}
		})
	}
}

func TestVectorsDecrypt(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			c := v.crypto(t)
			got, err := c.Decrypt(v.encrypt)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != v.plaintext {
				t.Errorf("Decrypt = %q, want %q", got, v.plaintext)
			}
			plain, err := c.Open(Envelope{Signature: v.signature, Timestamp: v.timestamp, Nonce: v.nonce, Encrypt: v.encrypt})
			if err != nil || string(plain) != v.plaintext {
				t.Errorf("Open = %q, %v", plain, err)
			}
		})
	}
}

// TestVectorsEncrypt encrypts the vectors' plaintexts with their random
// prefix and gets DingTalk's ciphertexts byte for byte: the layout and the
// padding to 32-byte blocks are DingTalk's.
func TestVectorsEncrypt(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			c := v.crypto(t)
			raw := decryptRaw(t, c, v.encrypt)
			var random [randomLength]byte
			copy(random[:], raw)
			if got := c.encrypt(random, []byte(v.plaintext)); got != v.encrypt {
				t.Errorf("encrypt = %s, want %s", got, v.encrypt)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	c := vectors[1].crypto(t)
	// Lengths around the block size: the padding is 1 to 32 bytes.
	for n := range 70 {
		plain := bytes.Repeat([]byte{'x'}, n)
		enc := c.Encrypt(plain)
		if raw, _ := base64.StdEncoding.DecodeString(enc); len(raw)%padBlock != 0 {
			t.Fatalf("%d bytes: ciphertext of %d bytes is not whole 32-byte blocks", n, len(raw))
		}
		got, err := c.Decrypt(enc)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: Decrypt(Encrypt) = %q, %v", n, got, err)
		}
	}
	if c.Encrypt([]byte("a")) == c.Encrypt([]byte("a")) {
		t.Error("two encryptions are equal: the random prefix is not random")
	}
	e := c.Success("1608001896814", "nonce123")
	plain, err := c.Open(e)
	if err != nil || !IsSuccess(plain) {
		t.Fatalf("Open(Success) = %q, %v", plain, err)
	}
	if e.Signature != Signature("mryue", e.Timestamp, e.Nonce, e.Encrypt) {
		t.Error("Success's signature is not the token's")
	}
	e.Nonce = "other"
	if _, err := c.Open(e); !errors.Is(err, ErrSignature) {
		t.Errorf("Open with another nonce: %v, want ErrSignature", err)
	}
}

// TestDecryptMalformed feeds Decrypt ciphertexts that are wrong in every way
// its checks know of: each is ErrMalformed, none panics.
func TestDecryptMalformed(t *testing.T) {
	c := vectors[1].crypto(t)
	good := decryptRaw(t, c, vectors[1].encrypt)
	padded := func(content []byte, pad byte, padLen int) []byte {
		return append(bytes.Clone(content), bytes.Repeat([]byte{pad}, padLen)...)
	}
	content := good[:len(good)-int(good[len(good)-1])] // 16 + 4 + JSON + owner key
	withLength := func(n uint32) []byte {
		b := bytes.Clone(content)
		binary.BigEndian.PutUint32(b[randomLength:], n)
		return b
	}
	cases := map[string]string{
		"empty":                       "",
		"bad base64":                  "!!!!" + vectors[1].encrypt[4:],
		"URL base64":                  strings.NewReplacer("+", "-", "/", "_").Replace(vectors[1].encrypt),
		"base64 padding missing":      strings.TrimRight(vectors[0].encrypt, "="),
		"16 bytes":                    base64.StdEncoding.EncodeToString(good[:16]),
		"not whole blocks":            vectors[1].encrypt[:len(vectors[1].encrypt)-8] + "AAAAAAA=",
		"48 bytes":                    sealRaw(t, c, good[:48]),
		"padding 0":                   sealRaw(t, c, padded(content[:64], 0, 32)[:96]),
		"padding 33":                  sealRaw(t, c, padded(content[:64], 33, 32)),
		"padding bytes differ":        sealRaw(t, c, append(bytes.Clone(content[:61]), 2, 2, 3)),
		"padding only":                sealRaw(t, c, bytes.Repeat([]byte{32}, 32)),
		"shorter than random+length":  sealRaw(t, c, padded(content[:19], 13, 13)),
		"length field beyond data":    sealRaw(t, c, padded(withLength(uint32(len(content))), byte(padBlock-len(content)%padBlock), padBlock-len(content)%padBlock)),
		"length field 0xffffffff":     sealRaw(t, c, padded(withLength(0xffffffff), byte(padBlock-len(content)%padBlock), padBlock-len(content)%padBlock)),
		"16-byte padding (Go sample)": goSampleEncrypt(t, c, []byte(vectors[1].plaintext)),
	}
	for name, enc := range cases {
		t.Run(name, func(t *testing.T) {
			if plain, err := c.Decrypt(enc); !errors.Is(err, ErrMalformed) {
				t.Errorf("Decrypt = %q, %v; want ErrMalformed", plain, err)
			}
		})
	}
}

func TestDecryptOwnerKey(t *testing.T) {
	v := vectors[1]
	other, err := New(v.token, v.aesKey, "dingOTHERcorp")
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := other.Decrypt(v.encrypt); !errors.Is(err, ErrOwnerKey) {
		t.Errorf("Decrypt for another owner key = %q, %v; want ErrOwnerKey", plain, err)
	}
	// A prefix of the owner key is another owner key too.
	prefix, _ := New(v.token, v.aesKey, v.ownerKey[:5])
	if _, err := prefix.Decrypt(v.encrypt); !errors.Is(err, ErrOwnerKey) {
		t.Errorf("Decrypt with a prefix of the owner key: %v; want ErrOwnerKey", err)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	const key = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
	for name, args := range map[string][3]string{
		"short key":       {"t", key[:42], "o"},
		"long key":        {"t", key + "=", "o"},
		"not base64":      {"t", "!" + key[1:], "o"},
		"empty token":     {"", key, "o"},
		"empty owner key": {"t", key, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(args[0], args[1], args[2])
			if err == nil {
				t.Fatal("New accepts it")
			}
			if strings.Contains(err.Error(), key[:10]) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}

// decryptRaw is the vector's padded plaintext, decrypted without checks.
func decryptRaw(t testing.TB, c *Crypto, enc string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(raw, raw)
	return raw
}

// sealRaw encrypts raw, whole AES blocks, as it is: no layout, no padding.
func sealRaw(t testing.TB, c *Crypto, raw []byte) string {
	t.Helper()
	buf := bytes.Clone(raw)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf)
}

// goSampleEncrypt encrypts as DingTalk's Go sample does, padding to 16
// bytes, which DingTalk itself does not accept.
func goSampleEncrypt(t testing.TB, c *Crypto, plain []byte) string {
	t.Helper()
	buf := append(make([]byte, randomLength), binary.BigEndian.AppendUint32(nil, uint32(len(plain)))...)
	buf = append(append(buf, plain...), c.ownerKey...)
	pad := 16 - len(buf)%16
	if (len(buf)+pad)%padBlock == 0 {
		t.Fatal("this plaintext pads to whole 32-byte blocks either way; pick another")
	}
	return sealRaw(t, c, append(buf, bytes.Repeat([]byte{byte(pad)}, pad)...))
}
