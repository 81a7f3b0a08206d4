// Command hetzner-volume-plugin is the `hetzner` managed Docker volume plugin: wiring only.
// Settings come from the environment (config.json's env, `docker plugin set`); the work is in
// internal/volumedriver.
//
// The same binary is the backup helper: with DOCKBRIDGE_HELPER=1 in its environment the helper
// package's init runs the helper instead (internal/volumeops/helper). And on a dockbridge host
// it runs the scheduled backups: `hetzner-volume-plugin backup run-due` (internal/schedule;
// installed as /var/lib/docker/dockbridge/bin/dockbridge-server, started by a systemd timer),
// `dockbridge-server disk grow|fsck ...`, run as root over SSH, grows or checks a volume's
// filesystem there (internal/volumefs), and, copied to the host's root disk as
// /usr/local/lib/dockbridge/dockbridge-server, the idle agent: `dockbridge-server idle run|status`
// (internal/idleagent), and the laptop agent's server end: `dockbridge-server local ...`
// (internal/linkserver). The CLI carries this one static Linux binary per server architecture
// (internal/serverbin) for all these jobs.
package main

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idleagent"
	"github.com/dockbridge/dockbridge/internal/linkserver"
	"github.com/dockbridge/dockbridge/internal/mount"
	"github.com/dockbridge/dockbridge/internal/schedule"
	"github.com/dockbridge/dockbridge/internal/volumedriver"
	"github.com/dockbridge/dockbridge/internal/volumefs"
	_ "github.com/dockbridge/dockbridge/internal/volumeops/helper" // DOCKBRIDGE_HELPER=1: the backup helper
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backup" {
		os.Exit(schedule.Main(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "idle" {
		os.Exit(idleagent.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "local" {
		os.Exit(linkserver.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "disk" {
		os.Exit(volumefs.Main(os.Args[2:], os.Stdout))
	}
	log := logrus.New()
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: false, FullTimestamp: true})
	s, err := volumedriver.SettingsFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	if lvl, err := logrus.ParseLevel(s.LogLevel); err == nil {
		log.SetLevel(lvl)
	}
	var metrics *volumedriver.Metrics
	var observer func(hetzner.RequestEvent)
	if s.MetricsAddr != "" {
		metrics = volumedriver.NewMetrics()
		observer = metrics.ObserveRequest
	}
	cloud, cloudErr := hetzner.New(hetzner.Config{
		Endpoint: s.Endpoint, Token: s.Token, Application: "dockbridge-volume-plugin", Logger: log, Observer: observer,
	})
	if s.TokenErr != nil {
		cloudErr = s.TokenErr
	}
	store, err := volumedriver.NewStateStore(s.StateDir)
	if err != nil {
		log.Fatal(err)
	}
	cfg := volumedriver.Config{
		Settings: s, Mounter: mount.New(), Store: store, Log: log, Metrics: metrics, CloudErr: cloudErr,
		Instance: func(ctx context.Context) (hetzner.Instance, error) {
			return hetzner.CurrentInstance(ctx, s.MetadataEndpoint)
		},
	}
	if cloudErr == nil {
		cfg.Cloud = cloud
	} else {
		log.Errorf("the plugin starts, but cannot reach Hetzner Cloud: %v", cloudErr)
	}
	d, err := volumedriver.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	if err := d.Recover(ctx); err != nil {
		log.Error(err)
	}
	cancel()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := d.Sync(ctx); err != nil {
			log.Warnf("initial sync with the API: %v", err)
		}
	}()
	if metrics != nil {
		metrics.Register(d)
		go func() {
			log.Infof("serving metrics on http://%s/metrics", s.MetricsAddr)
			log.Error(http.ListenAndServe(s.MetricsAddr, promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{})))
		}()
	}
	log.Info("serving the hetzner volume plugin on /run/docker/plugins/hetzner.sock")
	if err := d.ServeUntilStopped(func() error { return volume.NewHandler(d).ServeUnix("hetzner", 0) }); err != nil {
		log.Fatal(err)
	}
}
