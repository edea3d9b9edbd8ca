package dingtalk

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// plainPrefixByLoop is what plainPrefix computes, a byte at a time.
func plainPrefixByLoop(s string) int {
	if len(s) < plainWindow {
		return 0
	}
	n := 0
	for n < plainWindow && plainASCII[s[n]] {
		n++
	}
	return n
}

// Every byte value at every position of the window, alone among plain bytes
// and before bytes of every kind: plainPrefix stops exactly where a byte
// that is not plain is, and only there.
func TestPlainPrefixFindsEveryByte(t *testing.T) {
	for pos := range plainWindow {
		for c := range 256 {
			for _, after := range []byte{'a', '"', '\\', 0x00, 0x1f, 0x80, 0xff} {
				b := []byte(strings.Repeat("a", plainWindow+8))
				b[pos] = byte(c)
				for i := pos + 1; i < len(b); i++ {
					b[i] = after
				}
				s := string(b)
				if got, want := plainPrefix(s), plainPrefixByLoop(s); got != want {
					t.Fatalf("byte %#x at %d, then %#x: plainPrefix = %d, want %d", c, pos, after, got, want)
				}
			}
		}
	}
	if got := plainPrefix(strings.Repeat("a", plainWindow-1)); got != 0 {
		t.Fatalf("a string shorter than the window: %d, want 0", got)
	}
}

func TestPlainPrefixOnRandomBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab\"\\\x00\x1f\x20\x7e\x7f\x80\xc3\xff")
	b := make([]byte, plainWindow+3)
	for range 200_000 {
		for i := range b {
			if r.IntN(8) == 0 {
				b[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				b[i] = byte(r.IntN(256))
			}
		}
		s := string(b)
		if got, want := plainPrefix(s), plainPrefixByLoop(s); got != want {
			t.Fatalf("%q: plainPrefix = %d, want %d", s, got, want)
		}
	}
}
