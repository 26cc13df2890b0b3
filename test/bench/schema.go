package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// freshSchema creates a new schema on the PostgreSQL server of dsn and returns a DSN
// whose connections use it, and a function that drops it.
func freshSchema(dsn string) (string, func() error, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", nil, fmt.Errorf("-database-url: %w", err)
	}
	if err := requireLoopback("http://" + u.Host); err != nil {
		return "", nil, fmt.Errorf("-database-url: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := pgx.Identifier{"lanyard_bench_" + hex.EncodeToString(b)}.Sanitize()
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		return "", nil, fmt.Errorf("create bench schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema[1:len(schema)-1])
	u.RawQuery = q.Encode()
	return u.String(), func() error { return exec("DROP SCHEMA " + schema + " CASCADE") }, nil
}
