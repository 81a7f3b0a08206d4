package volumedriver

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// Metrics are the plugin's Prometheus metrics.
type Metrics struct {
	Registry   *prometheus.Registry
	requests   *prometheus.CounterVec
	opDuration *prometheus.HistogramVec
	mounted    prometheus.Gauge
}

const ns = "dockbridge_volume_plugin"

// NewMetrics registers the metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "api_requests_total",
			Help: "Hetzner Cloud API requests sent, by method, endpoint and HTTP status (0: no answer).",
		}, []string{"method", "endpoint", "status"}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "operation_duration_seconds",
			Help:    "Duration of Docker volume operations (create, mount, unmount, remove) by result.",
			Buckets: []float64{.001, .01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"operation", "result"}),
		mounted: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "mounted_volumes", Help: "Volumes mounted on this server.",
		}),
	}
	m.Registry.MustRegister(m.requests, m.opDuration, m.mounted)
	return m
}

// ObserveRequest feeds hetzner.Config.Observer.
func (m *Metrics) ObserveRequest(e hetzner.RequestEvent) {
	m.requests.WithLabelValues(e.Method, e.Endpoint, strconv.Itoa(e.Status)).Inc()
}

// Register adds the collectors that need the driver: budget and per-volume usage.
func (m *Metrics) Register(d *Driver) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "api_budget_remaining",
		Help: "Hetzner API requests left in the rate-limit budget, as last reported (-1: not known yet).",
	}, func() float64 {
		if d.cloud == nil {
			return -1
		}
		b := d.cloud.Budget()
		if !b.Seen {
			return -1
		}
		return float64(b.Remaining)
	}))
	m.Registry.MustRegister(&usageCollector{d: d})
}

var (
	sizeDesc = prometheus.NewDesc(ns+"_volume_size_bytes", "Filesystem size of a mounted volume.", []string{"volume"}, nil)
	usedDesc = prometheus.NewDesc(ns+"_volume_used_bytes", "Bytes used on a mounted volume's filesystem.", []string{"volume"}, nil)
)

type usageCollector struct{ d *Driver }

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sizeDesc; ch <- usedDesc }

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	c.d.mu.Lock()
	mounted := map[string]string{}
	for n, v := range c.d.vols {
		if v.Mountpoint != "" {
			mounted[n] = v.Mountpoint
		}
	}
	c.d.mu.Unlock()
	for n, mp := range mounted {
		u, err := c.d.m.Usage(mp)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(u.SizeBytes), n)
		ch <- prometheus.MustNewConstMetric(usedDesc, prometheus.GaugeValue, float64(u.UsedBytes), n)
	}
}
