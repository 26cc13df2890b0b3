package sigstore

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	testIssuer  = "https://accounts.example.com"
	testSubject = "alice@example.com"
)

// entityBundle serialises a VirtualSigstore TestEntity as a v0.3 bundle JSON with
// the leaf certificate, RFC 3161 timestamps, and each tlog entry with an inclusion
// proof and a signed entry timestamp, as Rekor returns them.
func entityBundle(tb testing.TB, vs *ca.VirtualSigstore, e *ca.TestEntity) []byte {
	tb.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		tb.Fatal(err)
	}
	b := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{
				Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw},
			},
		},
	}
	sc, err := e.SignatureContent()
	if err != nil {
		tb.Fatal(err)
	}
	if env := sc.EnvelopeContent(); env != nil {
		raw := env.RawEnvelope()
		payload, err := raw.DecodeB64Payload()
		if err != nil {
			tb.Fatal(err)
		}
		pe := &protodsse.Envelope{Payload: payload, PayloadType: raw.PayloadType}
		for _, s := range raw.Signatures {
			sig, err := base64.StdEncoding.DecodeString(s.Sig)
			if err != nil {
				tb.Fatal(err)
			}
			pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: sig, Keyid: s.KeyID})
		}
		b.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe}
	} else {
		ms := sc.MessageSignatureContent()
		b.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: ms.Digest()},
			Signature:     ms.Signature(),
		}}
	}
	tss, err := e.Timestamps()
	if err != nil {
		tb.Fatal(err)
	}
	if len(tss) > 0 {
		tvd := &protobundle.TimestampVerificationData{}
		for _, ts := range tss {
			tvd.Rfc3161Timestamps = append(tvd.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
		}
		b.VerificationMaterial.TimestampVerificationData = tvd
	}
	entries, err := e.TlogEntries()
	if err != nil {
		tb.Fatal(err)
	}
	for _, entry := range entries {
		tle := entry.TransparencyLogEntry()
		var kv struct{ Kind, APIVersion string }
		if err := json.Unmarshal(tle.CanonicalizedBody, &kv); err != nil {
			tb.Fatal(err)
		}
		tle.KindVersion = &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion}
		set, err := vs.RekorSignPayload(tlog.RekorPayload{
			Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
			IntegratedTime: tle.IntegratedTime,
			LogIndex:       tle.LogIndex,
			LogID:          hex.EncodeToString(tle.LogId.KeyId),
		})
		if err != nil {
			tb.Fatal(err)
		}
		tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
		if tle.InclusionProof == nil {
			p, err := vs.GetInclusionProof(tle.CanonicalizedBody)
			if err != nil {
				tb.Fatal(err)
			}
			root, err := hex.DecodeString(*p.RootHash)
			if err != nil {
				tb.Fatal(err)
			}
			var hashes [][]byte
			for _, h := range p.Hashes {
				hb, _ := hex.DecodeString(h)
				hashes = append(hashes, hb)
			}
			tle.InclusionProof = &protorekor.InclusionProof{
				LogIndex: *p.LogIndex, RootHash: root, TreeSize: *p.TreeSize, Hashes: hashes,
				Checkpoint: &protorekor.Checkpoint{Envelope: *p.Checkpoint},
			}
		}
		b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, tle)
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// trustedRootJSON renders the VirtualSigstore's trust material as a trusted_root.json.
func trustedRootJSON(tb testing.TB, vs *ca.VirtualSigstore, withCT bool) []byte {
	tb.Helper()
	ct := map[string]*root.TransparencyLog{}
	if withCT {
		ct = rawLogIDs(tb, vs.CTLogs())
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), ct, vs.TimestampingAuthorities(), rawLogIDs(tb, vs.RekorLogs()))
	if err != nil {
		tb.Fatal(err)
	}
	out, err := tr.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func statementJSON(tb testing.TB, predicateType string, predicate any, subjects ...map[string]any) []byte {
	tb.Helper()
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       subjects,
		"predicateType": predicateType,
		"predicate":     predicate,
	}
	out, err := json.Marshal(st)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func subject(name, sha256hex string) map[string]any {
	return map[string]any{"name": name, "digest": map[string]string{"sha256": sha256hex}}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// rawLogIDs fixes VirtualSigstore's log IDs, which hold the hex string's bytes rather
// than the raw key ID a trusted_root.json carries.
func rawLogIDs(tb testing.TB, logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
	tb.Helper()
	for k, l := range logs {
		id, err := hex.DecodeString(k)
		if err != nil {
			tb.Fatal(err)
		}
		l.ID = id
	}
	return logs
}
