package gormstore_test

import (
	"testing"

	"github.com/lanyardhq/lanyard/internal/store/gormstore"
	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

func TestRotationConformance(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			storetest.RunRotations(t, func(t *testing.T) storetest.RotationStore { return d.open(t) })
		})
	}
}

var _ storetest.RotationStore = (*gormstore.Store)(nil)
