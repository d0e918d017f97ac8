import assert from "node:assert/strict";
import { Counter, Gauge, Histogram, Registry } from "../runtime/metrics.ts";

Deno.test("metrics render in Prometheus text format with cumulative buckets and escaped labels", () => {
  const registry = new Registry();
  const requests = registry.register(new Counter("pixtral_requests_total", "HTTP requests by status"));
  let depth = 3;
  registry.register(new Gauge("pixtral_queue_depth", "requests waiting", () => depth));
  const ttft = registry.register(new Histogram("pixtral_ttft_seconds", "time to first token", [0.1, 1]));
  requests.inc({ status: "200" });
  requests.inc({ status: "200" });
  requests.inc({ status: 'a"b\\c' }, 5);
  for (const v of [0.05, 0.1, 0.5, 3]) ttft.observe(v);
  depth = 4;
  const text = registry.render();
  assert.match(text, /# TYPE pixtral_requests_total counter\n/);
  assert.match(text, /^pixtral_requests_total\{status="200"\} 2$/m);
  assert.match(text, /^pixtral_requests_total\{status="a\\"b\\\\c"\} 5$/m);
  assert.match(text, /^pixtral_queue_depth 4$/m);
  assert.match(text, /^pixtral_ttft_seconds_bucket\{le="0.1"\} 2$/m);
  assert.match(text, /^pixtral_ttft_seconds_bucket\{le="1"\} 3$/m);
  assert.match(text, /^pixtral_ttft_seconds_bucket\{le="\+Inf"\} 4$/m);
  assert.match(text, /^pixtral_ttft_seconds_sum 3.65$/m);
  assert.match(text, /^pixtral_ttft_seconds_count 4$/m);
  assert.equal(requests.get({ status: "200" }), 2);
});
