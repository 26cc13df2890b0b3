package gormstore_test

import (
	"testing"

	"github.com/lanyardhq/lanyard/internal/store/storetest"
)

func TestUIConformance(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			storetest.RunUI(t, func(t *testing.T) storetest.UIStore { return d.open(t) })
		})
	}
}
