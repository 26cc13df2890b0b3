package gormstore

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
)

// slowQuery is the duration above which a statement is logged at warn.
const slowQuery = 500 * time.Millisecond

var numberedPlaceholder = regexp.MustCompile(`\$(\d+)\$`)

// gormLogger routes gorm's messages to slog at warn and reports slow statements. It
// never logs SQL parameter values: ParamsFilter drops them, so the statement is logged
// with its placeholders. Errors are not logged here; they are returned, wrapped, to the
// caller, which knows whether they matter.
type gormLogger struct {
	log  *slog.Logger
	slow time.Duration // statements slower than this are logged
}

var (
	_ gormlogger.Interface = gormLogger{}
	_ gorm.ParamsFilter    = gormLogger{}
)

func newGormLogger(l *slog.Logger) gormLogger { return gormLogger{log: l, slow: slowQuery} }

// LogMode implements gormlogger.Interface; the level is slog's business.
func (l gormLogger) LogMode(gormlogger.LogLevel) gormlogger.Interface { return l }

// Info implements gormlogger.Interface. gorm's informational messages are dropped.
func (l gormLogger) Info(context.Context, string, ...any) {}

// Warn implements gormlogger.Interface.
func (l gormLogger) Warn(ctx context.Context, msg string, args ...any) {
	l.log.WarnContext(ctx, "gormstore: gorm: "+fmt.Sprintf(msg, args...))
}

// Error implements gormlogger.Interface.
func (l gormLogger) Error(ctx context.Context, msg string, args ...any) {
	l.log.WarnContext(ctx, "gormstore: gorm: "+fmt.Sprintf(msg, args...))
}

// Trace implements gormlogger.Interface.
func (l gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	elapsed := time.Since(begin)
	if elapsed < l.slow || !l.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	sql, rows := fc()
	// gorm's renderer marks PostgreSQL placeholders as $1$ while substituting values;
	// with none substituted, restore them.
	sql = numberedPlaceholder.ReplaceAllString(sql, "$$$1")
	// err is left out: a driver's message can quote a value it could not parse.
	l.log.WarnContext(ctx, "gormstore: slow query", "elapsed", elapsed, "rows", rows, "failed", err != nil, "sql", sql)
}

// ParamsFilter implements gorm.ParamsFilter: statements are rendered without their
// parameter values.
func (l gormLogger) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}
