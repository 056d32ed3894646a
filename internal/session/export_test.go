package session

// CacheStats returns the number of sessions m caches and their estimated
// bytes.
func CacheStats(m *Manager) (int, int64) { return m.cache.stats() }
