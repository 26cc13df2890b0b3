package keys

import (
	"encoding/asn1"
	"math/big"
)

// asn1Sig is the reference DER encoding of a raw r||s signature, by encoding/asn1.
func asn1Sig(raw []byte) []byte {
	half := len(raw) / 2
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(raw[:half]), new(big.Int).SetBytes(raw[half:]),
	})
	if err != nil {
		panic(err)
	}
	return der
}
