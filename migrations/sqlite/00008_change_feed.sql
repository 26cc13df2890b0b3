-- Change feed (SQLite): nothing to do. The PostgreSQL migration of this version adds
-- NOTIFY triggers so that several servers sharing a database drop their caches when
-- another one writes; a SQLite database has a single server process, which sees its
-- own writes, so it needs no feed. The file exists so that both dialects keep the same
-- version numbers (goose needs a statement, hence SELECT 1).

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
