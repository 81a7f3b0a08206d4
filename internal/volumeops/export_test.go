package volumeops

import "context"

// RemoveOldHelpers lets the tests run the cleanup that follows an import.
func (e *Engine) RemoveOldHelpers(ctx context.Context, keep string) { e.removeOldHelpers(ctx, keep) }
