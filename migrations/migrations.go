// Package migrations holds Lanyard's versioned database schema as goose SQL migrations,
// one directory per dialect, embedded into the binary.
//
// Contract:
//   - Files are named NNNNN_description.sql and are applied in version order by goose
//     (package gormstore runs them with goose's Provider API; there is no global state).
//   - A released migration is never edited: change the schema with a new version.
//   - Both dialects describe the same tables and columns. Column names are gorm's default
//     snake_case naming of the fields of the records in package store; a test in
//     gormstore compares every table with its record, so a mismatch fails loudly.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// SQLite returns the SQLite migrations, with the goose files at the root.
func SQLite() fs.FS { return sub("sqlite") }

// Postgres returns the PostgreSQL migrations, with the goose files at the root.
func Postgres() fs.FS { return sub("postgres") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		// fs.Sub fails only for an invalid path; dir is a constant above.
		panic("migrations: " + err.Error())
	}
	return f
}
