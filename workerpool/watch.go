package workerpool

import (
	"context"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// watchInterval is how often the dev reloader looks for changed .py files. Polling
// needs no inotify limits and works on every filesystem, at the cost of a walk a second.
const watchInterval = time.Second

// skipDirs are never walked: environments and caches, not the app's code.
var skipDirs = map[string]bool{".git": true, "__pycache__": true, ".venv": true, "venv": true,
	"node_modules": true, "site-packages": true, ".tox": true, ".mypy_cache": true}

// codeSnapshot summarises the .py files under dir: a change in any file's size or
// mtime, or a file added or removed, changes it.
func codeSnapshot(dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if path != dir && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".py") {
			return nil
		}
		if info, err := d.Info(); err == nil {
			b.WriteString(path)
			b.WriteByte(0)
			b.WriteString(info.ModTime().String())
			b.WriteByte(0)
			b.WriteString(strconv.FormatInt(info.Size(), 10))
			b.WriteByte('\n')
		}
		return nil
	})
	return b.String()
}

// watchCode restarts the workers, rolling, whenever the code under dir changes.
func (p *Pool) watchCode(ctx context.Context, dir string) {
	defer p.wg.Done()
	if dir == "" {
		dir = "."
	}
	last := codeSnapshot(dir)
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := codeSnapshot(dir)
		if now == last {
			continue
		}
		last = now
		p.log.Info("code changed; restarting workers", zap.String("dir", dir))
		if _, err := p.Restart(ctx, ReasonReload); err != nil && ctx.Err() == nil {
			p.log.Error("reload failed", zap.Error(err))
		}
	}
}
