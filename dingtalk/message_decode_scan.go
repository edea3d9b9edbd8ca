package dingtalk

import "math/bits"

// The decoder's string scan without a loop. Most strings in a callback are
// short (keys, IDs, a nickname); a loop over their bytes ends at a
// different count each time, and the branch that ends it is mispredicted
// once per string, which costs more than reading the bytes. plainPrefix
// instead looks at a fixed window of bytes, a word at a time, and finds the
// first one that a plain string cannot hold with arithmetic alone.
// Benchmark: BenchmarkParseGroupText.

// plainWindow is how many bytes plainPrefix looks at: three words, the
// length of all but the longest keys.
const plainWindow = 24

// plainPrefix returns how many bytes at the start of s are plain (see
// plainASCII), counting up to plainWindow. For s shorter than plainWindow it
// returns 0: it reads whole words only.
func plainPrefix(s string) int {
	if len(s) < plainWindow {
		return 0
	}
	special := unplainBytes(le64(s[0:8])) | unplainBytes(le64(s[8:16]))<<8 | unplainBytes(le64(s[16:24]))<<16
	return bits.TrailingZeros32(special | 1<<plainWindow)
}

// Bytes repeated in each byte of a word.
const (
	eachByte = 0x0101010101010101
	highBits = 0x8080808080808080
)

// unplainBytes returns a byte whose bit k is set if byte k of w (little
// endian) is not plain, or if a lower byte is not: only its lowest set bit
// is exact, which is all plainPrefix needs. It tests each byte of w at once
// for a quote, a backslash, a control character (below 0x20) and a byte of
// a multi-byte UTF-8 sequence (0x80 and above).
func unplainBytes(w uint64) uint32 {
	quote := w ^ eachByte*'"'
	backslash := w ^ eachByte*'\\'
	// (x - eachByte*n) &^ x has the high bit set in the lowest byte of x
	// below n (and maybe in bytes above it, through the borrow).
	high := ((quote-eachByte)&^quote | (backslash-eachByte)&^backslash | (w-eachByte*0x20)&^w | w) & highBits
	// Gather the eight high bits into the top byte: the multiplier moves
	// the high bit of byte k to bit 56+k, and no two products overlap.
	return uint32((high >> 7) * 0x0102040810204080 >> 56)
}

// le64 reads 8 bytes of s as a little-endian word (the compiler makes it one
// load on the machines that allow unaligned loads).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
