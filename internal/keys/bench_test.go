package keys

import "testing"

// The benchmarks use a realistic RFC 9068 access token payload (claims, ~480 bytes).

func benchmarkSign(b *testing.B, alg string) {
	m := newEnv(b).started(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(claims)))
	for b.Loop() {
		if _, err := m.Sign(alg, "at+jwt", claims); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignES256(b *testing.B) { benchmarkSign(b, ES256) }
func BenchmarkSignRS256(b *testing.B) { benchmarkSign(b, RS256) }

func benchmarkVerify(b *testing.B, alg string) {
	m := newEnv(b).started(b)
	tok := sign(b, m, alg, "at+jwt", claims)
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, _, err := m.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) { benchmarkVerify(b, ES256) }
func BenchmarkVerifyRS256(b *testing.B) { benchmarkVerify(b, RS256) }

// BenchmarkSignES256Parallel measures Sign from every core at once: the key set is
// read with an atomic load, so it should scale with GOMAXPROCS.
func BenchmarkSignES256Parallel(b *testing.B) {
	m := newEnv(b).started(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Sign(ES256, "at+jwt", claims); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
