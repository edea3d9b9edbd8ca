package dingtalk

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// maxNesting bounds how deeply objects and arrays may nest in a callback
// body. DingTalk's deepest message (richText) nests 4 levels; a body nested
// hundreds of levels deep is an attack on whatever parses it next: Python's
// json module, for one, fails with RecursionError near 1000 levels.
const maxNesting = 64

// messageKeys are the top-level keys ParseMessage reads, as DingTalk
// spells them, each with its position in the list.
var messageKeys = func() map[string]int {
	t := reflect.TypeFor[Message]()
	keys := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" {
			keys[name] = len(keys)
		}
	}
	return keys
}()

// checkShape makes sure every reader of body sees the message this package
// sees, and that the body is not nested deeper than maxNesting.
//
// encoding/json takes the last of two equal keys and matches keys to fields
// case-insensitively ("MsgID" and "msgid" fill MsgID), while a backend in
// another language reads keys exactly and may take the first of two. So a
// top-level key may appear only once, and a key that names one of the
// fields read here must be spelled exactly as DingTalk spells it: otherwise
// the msgId this gateway de-duplicates on, or the robotCode it checks, could
// differ from what the backend reads. Nested objects are not checked:
// nothing in them is enforced here.
//
// body must be JSON that json.Unmarshal accepted into a Message. It is
// walked once without being decoded: only brackets and top-level keys count.
func checkShape(body string) error {
	if trimmed := strings.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil // null: nothing to check
	}
	var (
		depth             int
		inString, escaped bool
		expectKey, inKey  bool
		keyStart          int
		seen              topLevelKeys
	)
	for i := range len(body) {
		switch c := body[i]; {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
			if inKey {
				inKey = false
				if err := seen.add(body[keyStart : i+1]); err != nil {
					return err
				}
			}
		case inString:
		case c == '"':
			inString = true
			if expectKey {
				inKey, expectKey, keyStart = true, false, i
			}
		case c == '{' || c == '[':
			if depth++; depth > maxNesting {
				return fmt.Errorf("nested deeper than %d levels", maxNesting)
			}
			expectKey = depth == 1
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 1:
			expectKey = true
		}
	}
	return nil
}

// topLevelKeys are the keys of the top-level object seen so far: a bit per
// key ParseMessage reads, so that a genuine body costs no allocation, and a
// set of the others.
type topLevelKeys struct {
	fields uint64
	others map[string]bool
}

// add records the key quoted (with its quotes, as in the body) and refuses a
// second one or a field's key in other letter case.
func (k *topLevelKeys) add(quoted string) error {
	key := quoted[1 : len(quoted)-1]
	if i, ok := messageKeys[key]; ok { // the common case
		return k.addField(i)
	}
	if strings.IndexByte(key, '\\') >= 0 || !utf8.ValidString(key) {
		// Unescaped as encoding/json does: "msg\u0049d" is msgId. (Into a
		// variable of its own: its address escapes, key's need not.)
		var unescaped string
		if err := json.Unmarshal([]byte(quoted), &unescaped); err != nil {
			return err
		}
		key = unescaped
		if i, ok := messageKeys[key]; ok {
			return k.addField(i)
		}
	}
	for name := range messageKeys {
		if strings.EqualFold(key, name) { // the folding encoding/json matches keys with
			return fmt.Errorf("a top-level key is %q spelled differently", name)
		}
	}
	if k.others[key] {
		return errDuplicateKey
	}
	if k.others == nil {
		k.others = make(map[string]bool)
	}
	k.others[key] = true
	return nil
}

func (k *topLevelKeys) addField(i int) error {
	if k.fields&(1<<i) != 0 {
		return errDuplicateKey
	}
	k.fields |= 1 << i
	return nil
}

var errDuplicateKey = errors.New("a top-level key appears twice")
