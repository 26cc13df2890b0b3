package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// maxDepth bounds the nesting of Data, as github.com/gowebpki/jcs does (and so that a
// map that contains itself fails instead of recursing forever).
const maxDepth = 10000

// appendData appends the canonical JSON of data: the bytes jcs.Transform(json.Marshal(data))
// would give, or its error.
//
// It writes the common types directly: the writer encodes every event's Data, and the
// generic route (marshal, then parse and re-serialise) is several times slower. Other
// types take the generic route, value by value. FuzzAppendDataMatchesJCS checks the
// equivalence.
func appendData(dst []byte, data map[string]any) ([]byte, error) {
	return appendObject(dst, data, 1)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, utf8Replaced(v), nil)
	case bool:
		if v {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case float64:
		return appendNumber(dst, v)
	case int:
		return appendNumber(dst, float64(v))
	case int64:
		return appendNumber(dst, float64(v))
	case int32:
		return appendNumber(dst, float64(v))
	case uint:
		return appendNumber(dst, float64(v))
	case uint64:
		return appendNumber(dst, float64(v))
	case uint32:
		return appendNumber(dst, float64(v))
	case map[string]any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		return appendObject(dst, v, depth+1)
	case map[string]string:
		if v == nil {
			return append(dst, "null"...), nil
		}
		m := make(map[string]any, len(v))
		for k, s := range v {
			m[k] = s
		}
		return appendObject(dst, m, depth+1)
	case []any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		return appendArray(dst, v, depth+1)
	case []string:
		if v == nil {
			return append(dst, "null"...), nil
		}
		a := make([]any, len(v))
		for i, s := range v {
			a[i] = s
		}
		return appendArray(dst, a, depth+1)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		c, err := jcs.Transform(b)
		if err != nil {
			return nil, err
		}
		return append(dst, c...), nil
	}
}

func appendObject(dst []byte, m map[string]any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("audit: data nested too deeply")
	}
	type member struct {
		key string // as encoded: invalid UTF-8 replaced
		val any
	}
	members := make([]member, 0, len(m))
	for k, v := range m {
		members = append(members, member{utf8Replaced(k), v})
	}
	slices.SortFunc(members, func(a, b member) int { return compareUTF16(a.key, b.key) })
	var err error
	dst = append(dst, '{')
	for i, mb := range members {
		if i > 0 {
			// Distinct keys can become equal when invalid UTF-8 is replaced; the
			// generic route refuses the duplicate, and so must this one.
			if mb.key == members[i-1].key {
				return nil, errors.New("audit: data has duplicate keys")
			}
			dst = append(dst, ',')
		}
		dst, _ = appendString(dst, mb.key, nil)
		dst = append(dst, ':')
		if dst, err = appendValue(dst, mb.val, depth); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

func appendArray(dst []byte, a []any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("audit: data nested too deeply")
	}
	var err error
	dst = append(dst, '[')
	for i, v := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendValue(dst, v, depth); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// appendNumber writes f as RFC 8785 (ECMAScript) formats an IEEE 754 double.
func appendNumber(dst []byte, f float64) ([]byte, error) {
	s, err := jcs.NumberToJSON(f)
	if err != nil {
		return nil, fmt.Errorf("audit: data: %w", err)
	}
	return append(dst, s...), nil
}

// utf8Replaced replaces each byte of s that is not part of valid UTF-8 with U+FFFD, as
// encoding/json does.
func utf8Replaced(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// compareUTF16 orders valid UTF-8 strings by their UTF-16 code units, as RFC 8785 sorts
// member names. It differs from byte order only between characters above U+FFFF and
// those in U+E000–U+FFFF.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			a1, a2 := utf16Units(ra)
			b1, b2 := utf16Units(rb)
			if a1 != b1 {
				return int(a1) - int(b1)
			}
			return int(a2) - int(b2)
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

func utf16Units(r rune) (uint16, uint16) {
	if r < 0x10000 {
		return uint16(r), 0
	}
	hi, lo := utf16.EncodeRune(r)
	return uint16(hi), uint16(lo)
}
