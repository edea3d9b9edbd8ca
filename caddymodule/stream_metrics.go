package caddymodule

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Topics of Stream frames, as counted: fixed words, never a frame's header.
const (
	topicMessage = "message"
	topicCard    = "card"
	topicEvent   = "event"
	topicOther   = "other"
)

// Outcomes of Stream frames, as counted.
const (
	frameDelivered = "delivered" // the destination took it (a message: and answered it)
	frameDuplicate = "duplicate" // a message already delivered: not again
	frameFailed    = "failed"    // the destination could not be reached or answered an error
	frameLater     = "later"     // an event its destination did not take: acked LATER
	frameInvalid   = "invalid"   // a robot message frame whose data is not a message
	frameUnrouted  = "unrouted"  // a frame of a topic with no destination: acked 404
)

// streamMetrics are the dingtalk_stream app's collectors, made once per
// process like the handler's.
var streamMetrics = newStreamMetricSet()

type streamMetricSet struct {
	connected  *prometheus.GaugeVec
	reconnects *prometheus.CounterVec
	frames     *prometheus.CounterVec
	delivery   *prometheus.HistogramVec
}

func newStreamMetricSet() *streamMetricSet {
	const ns, sub = "caddy", "dingtalk_stream"
	return &streamMetricSet{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "connected",
			Help: "1 while the robot's Stream connection is up, 0 otherwise, by robot.",
		}, []string{"robot"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "reconnects_total",
			Help: "Stream connections made again after one was lost or closed by DingTalk, by robot.",
		}, []string{"robot"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "frames_total",
			Help: "Stream frames by robot, topic (message, card, event, other) and outcome (delivered, duplicate, failed, later, invalid, unrouted).",
		}, []string{"robot", "topic", "outcome"}),
		delivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_duration_seconds",
			Help:    "How long delivering a frame took, retries and the route's answer included, by robot and topic.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"robot", "topic"}),
	}
}

func (m *streamMetricSet) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connected, m.reconnects, m.frames, m.delivery}
}

// robotStreamMetrics are one robot's series.
type robotStreamMetrics struct {
	robot string
	set   *streamMetricSet
}

func (m *streamMetricSet) forRobot(robot string) *robotStreamMetrics {
	m.connected.WithLabelValues(robot) // shown as 0 before the first connection
	return &robotStreamMetrics{robot: robot, set: m}
}

func (m *robotStreamMetrics) connected(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.set.connected.WithLabelValues(m.robot).Set(v)
}

func (m *robotStreamMetrics) reconnect() { m.set.reconnects.WithLabelValues(m.robot).Inc() }

func (m *robotStreamMetrics) frame(topic, outcome string) {
	m.set.frames.WithLabelValues(m.robot, topic, outcome).Inc()
}

func (m *robotStreamMetrics) delivered(topic string, took time.Duration) {
	m.set.delivery.WithLabelValues(m.robot, topic).Observe(took.Seconds())
}
