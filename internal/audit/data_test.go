package audit

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
)

// referenceData is the canonical Data the obvious way.
func referenceData(data map[string]any) ([]byte, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return jcs.Transform(b)
}

func checkDataMatches(t *testing.T, data map[string]any) {
	t.Helper()
	got, gotErr := appendData(nil, data)
	want, wantErr := referenceData(data)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("appendData error %v, reference error %v", gotErr, wantErr)
	}
	if string(got) != string(want) {
		t.Fatalf("appendData:\n got %q\nwant %q", got, want)
	}
}

func TestAppendDataMatchesJCS(t *testing.T) {
	type custom struct {
		A string `json:"a"`
		B int    `json:"b,omitempty"`
	}
	self := map[string]any{}
	self["self"] = self
	tests := []struct {
		name string
		data map[string]any
	}{
		{"empty", map[string]any{}},
		{"token", tokenEvent().Data},
		{"integers", map[string]any{"int": -3, "int64": int64(1) << 60, "int32": int32(-7), "uint": uint(7), "uint64": uint64(math.MaxUint64), "uint32": uint32(9)}},
		{"big integers round as doubles", map[string]any{"a": int64(1<<53 + 1), "b": int64(math.MaxInt64)}},
		{"floats", map[string]any{"a": 1.5, "b": 1e21, "c": 1e-7, "d": -0.0, "e": 0.1 + 0.2, "f": 5e-324, "g": math.MaxFloat64, "h": 123456789012345680000.0}},
		{"float32 takes the generic route", map[string]any{"a": float32(0.1)}},
		{"NaN", map[string]any{"a": math.NaN()}},
		{"infinity", map[string]any{"a": math.Inf(-1)}},
		{"strings", map[string]any{"a": "<&>\u2028\u2029\x00\x1f\x7f\"\\/", "b": "é😀\ufeff"}},
		{"invalid UTF-8", map[string]any{"a": "x\xffy\xc3", "b\xfe": "k"}},
		{"keys equal once repaired", map[string]any{"\xff": 1, "\xfe": 2}},
		{"key order by UTF-16", map[string]any{"\uff61": 1, "😀": 2, "z": 3, "": 4, "é": 5, "aa": 6, "a": 7}},
		{"nil values", map[string]any{"a": nil, "b": []any(nil), "c": map[string]any(nil), "d": []string(nil), "e": map[string]string(nil), "f": (*custom)(nil)}},
		{"nested", map[string]any{"a": []any{map[string]any{"z": true, "y": false}, []any{}, []string{"q", "p"}}, "b": map[string]string{"y": "1", "x": "2"}}},
		{"generic types", map[string]any{"t": time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), "c": custom{A: "x"}, "p": &custom{B: 2}, "r": json.RawMessage(` {"b":1, "a":2} `), "n": json.Number("1.50")}},
		{"channel", map[string]any{"c": make(chan int)}},
		{"cycle", self},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkDataMatches(t, tt.data) })
	}
}

// FuzzAppendDataMatchesJCS compares appendData with the generic route on whatever
// JSON decodes to, and on arbitrary keys, strings and numbers.
func FuzzAppendDataMatchesJCS(f *testing.F) {
	f.Add([]byte(`{"a":[1,2.5,"x",null,true,{"b":{}}]}`), "key", "value", int64(42), 1.5)
	f.Add([]byte(`[]`), "\xff", "\u2028\x00", int64(-1)<<62, 1e21)
	f.Add([]byte(`"\ud83d\ude00"`), "😀", "\uffff", int64(1)<<53+1, -0.0)
	f.Fuzz(func(t *testing.T, doc []byte, key, s string, i int64, x float64) {
		var decoded any
		if json.Unmarshal(doc, &decoded) != nil {
			decoded = string(doc)
		}
		checkDataMatches(t, map[string]any{
			"doc": decoded,
			key:   s,
			s:     []any{i, x, key},
			"i":   i,
			"x":   x,
		})
	})
}
