package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	ctrlmetrics "sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller/metrics"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

// librarySubsystem is the library's own subsystem name (controller.go's
// controllerSubsystem), so its metrics keep their usual names.
const librarySubsystem = "controller"

// Buckets of the latency histograms. Operations take from a millisecond (a
// directory) to minutes (cloning a large volume); a D-Bus call to ganesha
// takes about a millisecond.
var (
	operationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	busBuckets       = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
)

// Metrics is the provisioner's registry and the instruments its parts
// report to. It implements volume.Observer. Create it with New, before the
// parts that report to it; give it the sources to read with Watch.
type Metrics struct {
	reg *prometheus.Registry
	lib ctrlmetrics.Metrics

	operations    *prometheus.HistogramVec
	busCalls      *prometheus.HistogramVec
	reconcileRuns prometheus.Counter
	corrected     *prometheus.CounterVec
	reported      *prometheus.GaugeVec
	collectErrors *prometheus.CounterVec
}

var _ volume.Observer = (*Metrics)(nil)

// New makes a registry holding the Go and process collectors, the
// library's metrics and the provisioner's event metrics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		lib: ctrlmetrics.New(librarySubsystem),
		operations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    OperationSeconds,
			Help:    "Time taken by provision, delete, expand and clone operations, by result (success or error).",
			Buckets: operationBuckets,
		}, Names[OperationSeconds]),
		busCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    DBusCallSeconds,
			Help:    "Time taken by D-Bus calls to NFS-Ganesha, by method and result (success or error).",
			Buckets: busBuckets,
		}, Names[DBusCallSeconds]),
		reconcileRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ReconcileRunsTotal,
			Help: "Reconciliation passes run.",
		}),
		corrected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ReconcileCorrected,
			Help: "What reconciliation corrected: reexported (a PV's export was missing), converged (a live export's options had drifted), stray_export_removed (an export whose PV is gone), intent_reaped (an unfinished provision nobody received).",
		}, Names[ReconcileCorrected]),
		reported: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ReconcileReported,
			Help: "What the last reconciliation pass found and kept untouched: leftovers (volumes no PV names), missing (PVs whose volume is gone), refused (PVs naming a volume another PV owns, or a forged name), unreadable (PVs with an annotation that cannot be read).",
		}, Names[ReconcileReported]),
		collectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: CollectErrorsTotal,
			Help: "Failures to read a metrics source during a scrape (store, ganesha_stats, volume_statfs); the source's series are left out of that scrape.",
		}, Names[CollectErrorsTotal]),
	}
	m.reg.MustRegister(
		prometheus.NewGoCollector(),
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
		m.lib.PersistentVolumeClaimProvisionTotal,
		m.lib.PersistentVolumeClaimProvisionFailedTotal,
		m.lib.PersistentVolumeClaimProvisionDurationSeconds,
		m.lib.PersistentVolumeDeleteTotal,
		m.lib.PersistentVolumeDeleteFailedTotal,
		m.lib.PersistentVolumeDeleteDurationSeconds,
		m.operations, m.busCalls, m.reconcileRuns, m.corrected, m.reported, m.collectErrors,
	)
	// Series that alerts compare with 0 exist from the start.
	for _, a := range []string{"reexported", "converged", "stray_export_removed", "intent_reaped"} {
		m.corrected.WithLabelValues(a)
	}
	for _, f := range []string{"leftovers", "missing", "refused", "unreadable"} {
		m.reported.WithLabelValues(f)
	}
	return m
}

// Library is the library's metrics; pass it to the ProvisionController
// with controller.MetricsInstance so that they are served here.
func (m *Metrics) Library() ctrlmetrics.Metrics { return m.lib }

// Registry is the registry everything is served from.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' text format. A source that
// fails leaves its series out of that scrape (and counts the failure);
// the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Operation implements volume.Observer.
func (m *Metrics) Operation(op volume.Operation, took time.Duration, err error) {
	m.operations.WithLabelValues(string(op), result(err)).Observe(took.Seconds())
}

// Reconciled implements volume.Observer.
func (m *Metrics) Reconciled(res volume.ReconcileResult) {
	m.reconcileRuns.Inc()
	m.corrected.WithLabelValues("reexported").Add(float64(res.Reexported))
	m.corrected.WithLabelValues("converged").Add(float64(res.Converged))
	m.corrected.WithLabelValues("stray_export_removed").Add(float64(res.StrayExports))
	m.corrected.WithLabelValues("intent_reaped").Add(float64(res.ReapedIntents))
	m.reported.WithLabelValues("leftovers").Set(float64(res.Leftovers))
	m.reported.WithLabelValues("missing").Set(float64(res.Missing))
	m.reported.WithLabelValues("refused").Set(float64(res.Refused))
	m.reported.WithLabelValues("unreadable").Set(float64(res.Unreadable))
}

// BusCall records one D-Bus call to ganesha; it is a ganesha.BusObserver.
// The method label is the member name alone (AddExport), a fixed set.
func (m *Metrics) BusCall(method string, took time.Duration, err error) {
	if i := strings.LastIndexByte(method, '.'); i >= 0 {
		method = method[i+1:]
	}
	m.busCalls.WithLabelValues(method, result(err)).Observe(took.Seconds())
}

func (m *Metrics) collectFailed(source string, err error) {
	m.collectErrors.WithLabelValues(source).Inc()
	klog.V(2).InfoS("Metrics source failed; its series are left out of this scrape", "source", source, "err", err)
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "success"
}
