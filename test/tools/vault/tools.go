//go:build tools

// Package vault pins the HashiCorp Vault server that the tests run as a dev server.
// It lives in its own module so that Vault's dependencies never enter Lanyard's go.mod;
// `make vault` builds it once into a cache outside the working tree.
package vault

import _ "github.com/hashicorp/vault"
