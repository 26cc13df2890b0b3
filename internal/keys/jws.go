package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
)

// MaxTokenSize is the longest compact JWS Verify examines, in bytes.
const MaxTokenSize = 64 << 10

const (
	es256SigLen = 64 // JOSE raw r||s for P-256 (RFC 7518 §3.4)
	// maxTypLen bounds typ; maxCachedTyps bounds each key's cache of encoded headers.
	maxTypLen     = 64
	maxCachedTyps = 16
	maxKIDLen     = 128
)

var b64 = base64.RawURLEncoding.Strict()

// signingKey is an active key: its private half, and the encoded headers it has
// signed with so far.
type signingKey struct {
	pub    *publicKey
	ec     *ecdsa.PrivateKey
	rsa    *rsa.PrivateKey
	sigLen int // length of the raw JWS signature
	// headers maps typ to base64url(header) + ".", copied on write so Sign reads it
	// with one atomic load.
	headers atomic.Pointer[map[string]string]
}

// Sign returns a compact JWS over payload (the JSON claims, used as they are), signed
// with the active key for alg (ES256 or RS256). The protected header is exactly
// {"alg":…,"kid":…,"typ":…} in that order, with typ as given ("at+jwt" for RFC 9068
// access tokens). ES256 signatures are in the JOSE form, r||s, 64 bytes.
//
// typ must be 1 to 64 characters from [A-Za-z0-9._+/-] (media type names such as
// "at+jwt", "JWT", "application/at+jwt"). Sign does not inspect payload.
func (m *Manager) Sign(alg, typ string, payload []byte) (string, error) {
	i := algIndex(alg)
	if i < 0 {
		return "", fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	k := m.cur.Load().active[i]
	if k == nil {
		return "", fmt.Errorf("%w for %s", ErrNoActiveKey, alg)
	}
	prefix, err := k.header(typ)
	if err != nil {
		return "", err
	}
	inputLen := len(prefix) + b64.EncodedLen(len(payload))
	buf := make([]byte, inputLen+1+b64.EncodedLen(k.sigLen))
	copy(buf, prefix)
	b64.Encode(buf[len(prefix):inputLen], payload)
	digest := sha256.Sum256(buf[:inputLen])

	var raw [512]byte // the largest signature: RSA-4096
	sig := raw[:k.sigLen]
	if k.ec != nil {
		der, err := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
		if err != nil {
			return "", fmt.Errorf("keys: sign: %w", err)
		}
		if err := derToRaw(der, sig); err != nil {
			return "", fmt.Errorf("keys: sign: %w", err)
		}
		lowS(sig[32:])
	} else {
		s, err := rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, digest[:])
		if err != nil {
			return "", fmt.Errorf("keys: sign: %w", err)
		}
		sig = s
	}
	buf[inputLen] = '.'
	b64.Encode(buf[inputLen+1:], sig)
	return string(buf), nil
}

// header returns base64url of the key's header for typ, followed by '.'.
func (k *signingKey) header(typ string) (string, error) {
	cache := k.headers.Load()
	if h, ok := (*cache)[typ]; ok {
		return h, nil
	}
	if !validTyp(typ) {
		return "", fmt.Errorf("keys: invalid typ %.64q: want 1 to %d characters from [A-Za-z0-9._+/-]", typ, maxTypLen)
	}
	h := b64.EncodeToString(headerJSON(k.pub.alg, k.pub.kid, typ)) + "."
	// Copy on write, bounded: typ comes from code, so a handful of values in practice.
	for len(*cache) < maxCachedTyps {
		next := maps.Clone(*cache)
		next[typ] = h
		if k.headers.CompareAndSwap(cache, &next) {
			break
		}
		cache = k.headers.Load()
	}
	return h, nil
}

// headerJSON is the one serialisation of a header Sign writes and Verify accepts. No
// value needs JSON escaping: alg is from the allow-list, kid is base64url, and typ is
// restricted by validTyp.
func headerJSON(alg, kid, typ string) []byte {
	return []byte(`{"alg":"` + alg + `","kid":"` + kid + `","typ":"` + typ + `"}`)
}

func validTyp(typ string) bool {
	if typ == "" || len(typ) > maxTypLen {
		return false
	}
	for i := 0; i < len(typ); i++ {
		switch c := typ[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == '+' || c == '/' || c == '-':
		default:
			return false
		}
	}
	return true
}

func validKID(kid string) bool {
	if kid == "" || len(kid) > maxKIDLen {
		return false
	}
	for i := 0; i < len(kid); i++ {
		switch c := kid[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// parseHeader parses a header in exactly the form headerJSON writes. Anything else —
// other members (jku, jwk, x5u, crit, b64…), another order, whitespace, escapes,
// duplicates — is refused: Verify accepts only what Sign produces.
func parseHeader(h []byte) (alg, kid, typ string, err error) {
	s := string(h)
	var ok bool
	if s, ok = strings.CutPrefix(s, `{"alg":"`); !ok {
		return "", "", "", errors.New(`header must be {"alg","kid","typ"}`)
	}
	if alg, s, ok = strings.Cut(s, `","kid":"`); !ok {
		return "", "", "", errors.New(`header must be {"alg","kid","typ"}`)
	}
	if kid, s, ok = strings.Cut(s, `","typ":"`); !ok {
		return "", "", "", errors.New(`header must be {"alg","kid","typ"}`)
	}
	if typ, ok = strings.CutSuffix(s, `"}`); !ok || strings.IndexByte(typ, '"') >= 0 {
		return "", "", "", errors.New(`header must be {"alg","kid","typ"}`)
	}
	if algIndex(alg) < 0 {
		return "", "", "", fmt.Errorf("alg %.16q not allowed (ES256, RS256)", alg)
	}
	if !validKID(kid) {
		return "", "", "", errors.New("malformed kid")
	}
	if !validTyp(typ) {
		return "", "", "", errors.New("malformed typ")
	}
	return alg, kid, typ, nil
}

// Verify checks a compact JWS signed by one of the published keys (next, active, or
// retired before its NotAfter) and returns its payload and header typ. The header
// must be exactly what Sign writes: {"alg","kid","typ"}, alg in the allow-list ES256,
// RS256, and equal to the alg of the key kid names — so "none", HS256 and key
// confusion are refused before any cryptography. base64url must be unpadded and
// canonical, and ES256 signatures in low-S form (as Sign writes them), so a token has
// exactly one accepted encoding: no one can derive a second valid token string, or
// signature, from one they hold. Every error wraps ErrInvalidToken.
//
// Verify checks the signature only. The caller checks the claims (exp, nbf, iss, aud)
// and typ, and must not modify the returned payload: a token verified before is
// answered from a cache (verifiedCache), with the same payload slice.
func (m *Manager) Verify(token string) (payload []byte, typ string, err error) {
	if len(token) > MaxTokenSize {
		return nil, "", invalid("longer than %d bytes", MaxTokenSize)
	}
	sum := sha256.Sum256([]byte(token))
	if v, ok := m.verified.get(sum); ok {
		if k := m.cur.Load().published[v.kid]; k != nil && !k.expired(m.now()) {
			return v.payload, v.typ, nil
		}
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, "", invalid("not a compact JWS (three base64url parts separated by '.')")
	}
	if h == "" || p == "" || s == "" {
		return nil, "", invalid("empty header, payload or signature")
	}
	hdr, err := b64.DecodeString(h)
	if err != nil {
		return nil, "", invalid("header is not base64url")
	}
	alg, kid, typ, err := parseHeader(hdr)
	if err != nil {
		return nil, "", invalid("%v", err)
	}
	k := m.cur.Load().published[kid]
	if k == nil || k.expired(m.now()) {
		return nil, "", invalid("unknown kid")
	}
	if alg != k.alg {
		return nil, "", invalid("alg %s does not match the key's %s", alg, k.alg)
	}
	var raw [512]byte
	want := es256SigLen
	if k.rsa != nil {
		want = k.rsa.Size()
	}
	if b64.DecodedLen(len(s)) != want {
		return nil, "", invalid("signature length")
	}
	n, err := b64.Decode(raw[:], []byte(s))
	if err != nil || n != want {
		return nil, "", invalid("signature is not base64url")
	}
	digest := sha256.Sum256([]byte(token[:len(h)+1+len(p)]))
	if k.ec != nil {
		if bytes.Compare(raw[32:es256SigLen], p256HalfN[:]) > 0 {
			return nil, "", invalid("ECDSA signature is not in low-S form")
		}
		var der [72]byte
		if !ecdsa.VerifyASN1(k.ec, digest[:], rawToDER(raw[:es256SigLen], der[:0])) {
			return nil, "", invalid("bad signature")
		}
	} else if rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest[:], raw[:n]) != nil {
		return nil, "", invalid("bad signature")
	}
	payload, err = b64.DecodeString(p)
	if err != nil {
		return nil, "", invalid("payload is not base64url")
	}
	m.verified.put(sum, verifiedToken{kid: kid, typ: typ, payload: payload})
	return payload, typ, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}

// p256N is the order of P-256 and p256HalfN ⌊n/2⌋, big-endian.
var (
	p256N = [32]byte{
		0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
	}
	p256HalfN = [32]byte{
		0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
	}
)

// lowS replaces an ECDSA s (32 bytes, big-endian, 0 < s < n) by n − s when s > n/2.
// (r, s) and (r, n − s) are both valid signatures of the same message; always writing
// the low one, and accepting only it, removes that malleability. s is public, so the
// branch leaks nothing.
func lowS(s []byte) {
	if bytes.Compare(s, p256HalfN[:]) <= 0 {
		return
	}
	borrow := 0
	for i := 31; i >= 0; i-- {
		d := int(p256N[i]) - int(s[i]) - borrow
		borrow = 0
		if d < 0 {
			d += 256
			borrow = 1
		}
		s[i] = byte(d)
	}
}

// derToRaw converts an ASN.1 DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs), as
// ecdsa.SignASN1 returns, to the JOSE form: r and s big-endian, each left-padded to
// half of out. It accepts only minimal DER with positive integers that fit.
func derToRaw(der, out []byte) error {
	if len(der) < 2 || der[0] != 0x30 || der[1] >= 0x80 || int(der[1]) != len(der)-2 {
		return errors.New("malformed ECDSA signature")
	}
	rest := der[2:]
	half := len(out) / 2
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || rest[1] == 0 || rest[1] >= 0x80 || int(rest[1]) > len(rest)-2 {
			return errors.New("malformed ECDSA signature")
		}
		v := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		if v[0]&0x80 != 0 {
			return errors.New("malformed ECDSA signature: negative integer")
		}
		if v[0] == 0 && len(v) > 1 {
			if v[1]&0x80 == 0 {
				return errors.New("malformed ECDSA signature: non-minimal integer")
			}
			v = v[1:]
		}
		if len(v) > half {
			return errors.New("malformed ECDSA signature: integer too large")
		}
		dst := out[i*half : (i+1)*half]
		clear(dst[:half-len(v)])
		copy(dst[half-len(v):], v)
	}
	if len(rest) != 0 {
		return errors.New("malformed ECDSA signature: trailing data")
	}
	return nil
}

// rawToDER appends the DER ECDSA-Sig-Value of a JOSE r||s signature to dst (whose
// capacity should be 72 bytes for P-256, to avoid allocating).
func rawToDER(raw, dst []byte) []byte {
	half := len(raw) / 2
	r, s := trimInt(raw[:half]), trimInt(raw[half:])
	body := intLen(r) + intLen(s)
	dst = append(dst, 0x30, byte(body))
	dst = appendInt(dst, r)
	return appendInt(dst, s)
}

// trimInt drops leading zero bytes, keeping one for zero.
func trimInt(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

func intLen(b []byte) int {
	if b[0]&0x80 != 0 {
		return 2 + 1 + len(b)
	}
	return 2 + len(b)
}

func appendInt(dst, b []byte) []byte {
	if b[0]&0x80 != 0 {
		dst = append(dst, 0x02, byte(len(b)+1), 0)
	} else {
		dst = append(dst, 0x02, byte(len(b)))
	}
	return append(dst, b...)
}
