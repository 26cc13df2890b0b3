package httpapi

import (
	"testing"
)

// FuzzEnrolmentBodies feeds the enrolment request decoders arbitrary bodies: each
// gives a request within the size limits or a problem, never a panic.
func FuzzEnrolmentBodies(f *testing.F) {
	f.Add([]byte(`{"ek_public":"AAEC","ak_public":"AAEC"}`))
	f.Add([]byte(`{"ek_public":"AAEC","ek_certificate":"MIIB","ak_public":"AAEC"}`))
	f.Add([]byte(`{"ek_public":"not base64","ak_public":""}`))
	f.Add([]byte(`{"secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}`))
	f.Add([]byte(`{"secret":"","extra":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req enrolRequest
		if decodeJSON(body, &req) == nil {
			if r, err := req.decode(); err == nil {
				if len(r.EKPublic) == 0 || len(r.AKPublic) == 0 || len(r.EKPublic) > maxTPMPublic ||
					len(r.AKPublic) > maxTPMPublic || len(r.EKCertificate) > maxEKCert {
					t.Fatalf("accepted %d/%d/%d bytes", len(r.EKPublic), len(r.AKPublic), len(r.EKCertificate))
				}
			} else if _, ok := err.(*Problem); !ok {
				t.Fatalf("decode error %T is not a problem", err)
			}
		}
		var act activationRequest
		if decodeJSON(body, &act) == nil {
			if s, err := act.decode(); err == nil && (len(s) == 0 || len(s) > 64) {
				t.Fatalf("accepted a %d-byte secret", len(s))
			}
		}
	})
}
