// Package gormstore implements store.Store with gorm on SQLite (pure Go, for single-node
// deployments and tests) and PostgreSQL (for everything else).
//
// Contract, beyond the one in package store:
//   - The schema is owned by the goose migrations in package migrations; call Migrate
//     before first use. gorm never creates or alters tables.
//   - Times are written in UTC truncated to the microsecond (PostgreSQL's resolution), so
//     both dialects return exactly what the other would. Records passed to Create* and
//     RotateCredential are updated in place with the normalised times (and CreatedAt set
//     to now when zero). Audit events are the exception: they are hashed before they
//     reach the store, so AppendAudit refuses a sub-microsecond time instead of changing it.
//   - Callbacks given to UpdateAgent, UpdateSigningKey and AppendAudit run inside the
//     write transaction while it holds the lock; they must be quick and must not call
//     the Store (on SQLite that deadlocks until ctx ends: there is one writer connection).
//   - No SQL parameter value is ever logged: they include credential hashes.
//
// SQLite concurrency: SQLite allows one writer at a time. Rather than let concurrent
// write transactions race for the file lock (and fail with "database is locked" when a
// deferred transaction cannot upgrade, or wait in SQLite's sleeping busy handler), the
// Store keeps two connection pools on the file: a single writer connection, so writers
// queue in database/sql and hand over without sleeping, and a pool of query-only reader
// connections, which WAL lets run alongside the writer. The writer also begins its
// transactions IMMEDIATE and sets busy_timeout, so another process on the same file
// waits instead of failing.
package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/lanyardhq/lanyard/internal/store"
	"github.com/lanyardhq/lanyard/migrations"
)

// Dialect names returned by (*Store).Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

const (
	// defaultLimit and maxLimit bound ListAgents and ListAudit pages.
	defaultLimit = 100
	maxLimit     = 1000

	// postgresMaxConns sizes the PostgreSQL pool: enough for the token endpoint's
	// concurrency on a few cores without crowding max_connections (100 by default)
	// when several servers share one database.
	postgresMaxConns  = 32
	postgresIdleConns = 16

	// sqliteBusyTimeout is how long a SQLite connection waits for a lock held by
	// another process before failing with SQLITE_BUSY.
	sqliteBusyTimeout = 10 * time.Second
)

var _ store.Store = (*Store)(nil)

// Store is the gorm implementation of store.Store. It is safe for concurrent use.
type Store struct {
	dialect string
	// w runs writes and read-modify-write transactions; r runs plain reads. They are
	// the same pool on PostgreSQL; on SQLite w has exactly one connection.
	w, r *gorm.DB
	// pools are the sql.DBs to close, writer first.
	pools []*sql.DB
	log   *slog.Logger
	// auditBatch is the number of audit events per INSERT.
	auditBatch int
	// pgConfig is the parsed PostgreSQL DSN (nil on SQLite): the change feed opens its
	// own connection with it, outside the pool.
	pgConfig *pgx.ConnConfig
}

// Open connects to the database named by dsn and checks that it answers.
//
// A dsn starting with postgres:// or postgresql:// is a PostgreSQL URL (pgx syntax; a
// search_path parameter selects the schema). Anything else is a SQLite file path or
// file: URI; it may carry extra _pragma parameters, but not _txlock or _time_format,
// which the Store controls, and it must name a file (an in-memory database would give
// each pooled connection its own empty database).
//
// Open does not change the schema: call Migrate. logger may be nil.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		s   *Store
		err error
	)
	if isPostgres(dsn) {
		s, err = openPostgres(dsn, logger)
	} else {
		s, err = openSQLite(dsn, logger)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func gormConfig(logger *slog.Logger) *gorm.Config {
	return &gorm.Config{
		Logger:  newGormLogger(logger),
		NowFunc: now,
		// Every multi-statement operation opens its own transaction; single
		// statements are atomic and need none.
		SkipDefaultTransaction: true,
		// Name the columns in SELECTs rather than "*", so a column added by a newer
		// migration does not change what an older binary reads.
		QueryFields: true,
	}
}

func openPostgres(dsn string, logger *slog.Logger) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("gormstore: parse postgres dsn: %w", err)
	}
	db := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
		// Return timestamptz values in UTC rather than time.Local.
		c.TypeMap().RegisterType(&pgtype.Type{
			Name:  "timestamptz",
			OID:   pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		return nil
	}))
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresIdleConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute)
	g, err := gorm.Open(postgres.New(postgres.Config{Conn: db}), gormConfig(logger))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("gormstore: open postgres: %w", err)
	}
	return &Store{dialect: DialectPostgres, w: g, r: g, pools: []*sql.DB{db}, log: logger, auditBatch: postgresAuditBatch,
		pgConfig: cfg.Copy()}, nil
}

// sqlitePragmas are run on every SQLite connection. WAL lets readers run alongside the
// writer; synchronous=NORMAL is durable across application crashes and loses at most
// the last transactions on power loss, the usual trade-off with WAL.
var sqlitePragmas = []string{
	fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()),
	"journal_mode(WAL)",
	"synchronous(NORMAL)",
	"foreign_keys(1)",
}

// sqliteDSNs returns the writer's and the readers' DSNs for the database at dsn.
func sqliteDSNs(dsn string) (writer, reader string, err error) {
	if dsn == "" {
		return "", "", errors.New("gormstore: empty sqlite path")
	}
	path, rawQuery, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", "", fmt.Errorf("gormstore: parse sqlite dsn query: %w", err)
	}
	if path == ":memory:" || strings.HasPrefix(path, "file::memory:") || q.Get("mode") == "memory" {
		return "", "", errors.New("gormstore: in-memory sqlite databases are not supported: give a file path")
	}
	// _time_format would change how times compare, and the driver ignores _txlock
	// when it is present.
	for _, k := range []string{"_txlock", "_time_format"} {
		if q.Has(k) {
			return "", "", fmt.Errorf("gormstore: sqlite dsn must not set %s", k)
		}
	}
	// Ours come last so they win over any the caller set.
	q["_pragma"] = append(q["_pragma"], sqlitePragmas...)
	w := cloneValues(q)
	w.Set("_txlock", "immediate")
	r := cloneValues(q)
	r["_pragma"] = append(r["_pragma"], "query_only(1)")
	return path + "?" + w.Encode(), path + "?" + r.Encode(), nil
}

// createPrivate creates the database file readable by its owner only, if it does not
// exist yet: it holds credential hashes, and SQLite would create it 0644 (its -wal and
// -shm files copy the database file's mode).
func createPrivate(dsn string) error {
	path, _, _ := strings.Cut(dsn, "?")
	if p, ok := strings.CutPrefix(path, "file:"); ok {
		u, err := url.Parse("file:" + p)
		if err != nil {
			return fmt.Errorf("gormstore: parse sqlite uri: %w", err)
		}
		path = u.Opaque
		if path == "" {
			path = u.Path
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("gormstore: create sqlite database: %w", err)
	}
	return f.Close()
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func openSQLite(dsn string, logger *slog.Logger) (*Store, error) {
	wdsn, rdsn, err := sqliteDSNs(dsn)
	if err != nil {
		return nil, err
	}
	if err := createPrivate(dsn); err != nil {
		return nil, err
	}
	wdb, err := sql.Open(sqlite.DriverName, wdsn)
	if err != nil {
		return nil, fmt.Errorf("gormstore: open sqlite: %w", err)
	}
	// One writer connection, kept open for the life of the Store: writers queue in
	// database/sql instead of contending for SQLite's lock.
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)

	rdb, err := sql.Open(sqlite.DriverName, rdsn)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("gormstore: open sqlite: %w", err)
	}
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	rdb.SetConnMaxIdleTime(5 * time.Minute)

	s := &Store{dialect: DialectSQLite, pools: []*sql.DB{wdb, rdb}, log: logger, auditBatch: sqliteAuditBatch}
	// gorm opens a connection while initialising; the writer goes first, so that a new
	// file is switched to WAL before any query-only connection opens it.
	if s.w, err = gorm.Open(&sqlite.Dialector{Conn: wdb}, gormConfig(logger)); err != nil {
		s.Close()
		return nil, fmt.Errorf("gormstore: open sqlite writer: %w", err)
	}
	if s.r, err = gorm.Open(&sqlite.Dialector{Conn: rdb}, gormConfig(logger)); err != nil {
		s.Close()
		return nil, fmt.Errorf("gormstore: open sqlite readers: %w", err)
	}
	return s, nil
}

// Dialect reports the database in use: DialectSQLite or DialectPostgres.
func (s *Store) Dialect() string { return s.dialect }

// Migrate applies every pending migration of the Store's dialect; with none pending it
// changes nothing. Concurrent calls are safe: on PostgreSQL a session advisory lock
// (scoped to the current schema) serialises migrators across servers, and on SQLite
// goose holds the Store's single writer connection for the whole run.
func (s *Store) Migrate(ctx context.Context) error {
	wdb := s.pools[0]
	var (
		dialect goose.Dialect
		opts    = []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
		fsys    = migrations.SQLite()
	)
	switch s.dialect {
	case DialectPostgres:
		dialect, fsys = goose.DialectPostgres, migrations.Postgres()
		var schema string
		if err := wdb.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			return fmt.Errorf("gormstore: migrate: current schema: %w", err)
		}
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(migrateLockID(schema)),
			lock.WithLockTimeout(1, 120), // poll every second for up to two minutes
		)
		if err != nil {
			return fmt.Errorf("gormstore: migrate: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	default:
		dialect = goose.DialectSQLite3
	}
	p, err := goose.NewProvider(dialect, wdb, fsys, opts...)
	if err != nil {
		return fmt.Errorf("gormstore: migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("gormstore: migrate: %w", err)
	}
	for _, r := range results {
		s.log.InfoContext(ctx, "gormstore: applied migration",
			"dialect", s.dialect, "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}

// migrateLockID derives the advisory lock for migrating schema, so that servers
// sharing a schema serialise while separate schemas (parallel test runs) do not.
func migrateLockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("lanyard/migrate/" + schema))
	return int64(h.Sum64() & (1<<63 - 1))
}

// Ping checks that the database answers on every pool.
func (s *Store) Ping(ctx context.Context) error {
	for _, db := range s.pools {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("gormstore: ping %s: %w", s.dialect, err)
		}
	}
	return nil
}

// Close closes every connection. The Store must not be used afterwards.
func (s *Store) Close() error {
	var errs []error
	for _, db := range s.pools {
		errs = append(errs, db.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gormstore: close: %w", err)
	}
	return nil
}

// now is the Store's clock: UTC, at the resolution both dialects store.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// utc normalises t as the Store writes it. The zero time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// utcPtr is utc for optional times; it allocates rather than write through p, which the
// caller may share.
func utcPtr(p *time.Time) *time.Time {
	if p == nil {
		return nil
	}
	t := utc(*p)
	return &t
}

// wrapErr adds the operation to err and maps driver errors onto the store sentinels.
func wrapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("gormstore: %s: %w", op, store.ErrNotFound)
	case isUniqueViolation(err):
		// The driver's message names the constraint, never the values.
		return fmt.Errorf("gormstore: %s: %w: %v", op, store.ErrConflict, err)
	default:
		return fmt.Errorf("gormstore: %s: %w", op, err)
	}
}

// isUniqueViolation reports whether err is a unique or primary-key violation.
func isUniqueViolation(err error) bool {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code == "23505" // unique_violation
	}
	if sqErr, ok := errors.AsType[*gosqlite.Error](err); ok {
		code := sqErr.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return errors.Is(err, gorm.ErrDuplicatedKey)
}

// errConcurrentUpdate reports a compare-and-swap whose row changed under it. The row
// lock (PostgreSQL) or the single writer (SQLite) make this unreachable in practice;
// the generation check is a second line of defence.
var errConcurrentUpdate = fmt.Errorf("%w: concurrent update", store.ErrConflict)

// limit applies the page size rules of AgentFilter and AuditFilter.
func limit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	default:
		return n
	}
}
