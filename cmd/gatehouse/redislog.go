package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// redisLogger sends go-redis's own messages (dial failures while the store is
// down) to Gatehouse's JSON log instead of plain lines on stderr. go-redis
// keeps its logger in a process-wide variable, so only main sets it, once.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "redis")
}

func useRedisLogger(log *slog.Logger) { redis.SetLogger(redisLogger{log: log}) }
