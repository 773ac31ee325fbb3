"""Envoy's bootstrap for the simulated pod's sidecar, in Istio's or Linkerd's port layout.

The listeners mirror what a mesh's proxy has in a real pod:
- outbound: iptables REDIRECTs the app's outgoing TCP here; the original_dst listener filter
  recovers where the app was going and an ORIGINAL_DST cluster connects there, as Istio's
  PassthroughCluster does, speaking upstream whatever the app spoke to it (HTTP/1.1, or HTTP/2
  for gRPC: the listener's codec is chosen per connection, and the cluster follows it);
- inbound: iptables REDIRECTs traffic for the app's ports here; it is forwarded to the app on
  127.0.0.1 (the pre-1.10 Istio way, which needs no 127.0.0.6 source binding), through Istio's
  per-port clusters `inbound|PORT||`: the gRPC port (8090) over HTTP/2, as Istio forwards to a
  grpc/http2 port, everything else over HTTP/1.1 with WebSocket upgrades allowed;
- admin, on loopback only.

Start-up is slow on purpose and controllable: cluster discovery (CDS) points at an xDS server
that accepts connections and never answers, like an istiod the pod cannot get configuration
from. Envoy keeps its listeners closed and /ready at 503 until CDS's initial_fetch_timeout ends
its initialisation, so the sidecar is "not ready" for exactly `init_delay` seconds.
"""

import json

LAYOUTS = {
    # Istio: 15001 outbound capture, 15006 inbound capture, 15000 admin (pilot-agent's 15020
    # status server is the agent's, in front of it).
    "istio": {"outbound": 15001, "inbound": 15006, "admin": 15000},
    # Linkerd: 4140 outbound, 4143 inbound. Linkerd's admin (4191) is the agent's stand-in;
    # Envoy's own admin moves to Envoy's default port, out of the way.
    "linkerd": {"outbound": 4140, "inbound": 4143, "admin": 9901},
}


def _address(host, port):
    return {"socket_address": {"address": host, "port_value": port}}


def _static_cluster(name, host, port, http2=False):
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _hcm(stat_prefix, cluster, websocket=False):
    """An HTTP connection manager that proxies everything to `cluster`; the codec (HTTP/1.1 or
    HTTP/2) is whatever the caller speaks.

    Route timeout 0 (none): the pod's long requests and streams must be cut by the shutdown, not
    by Envoy's default 15 s route timeout. Envoy's stream idle timeout (5 min) is far above any
    pause the scenarios make.
    """
    config = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    if websocket:
        config["upgrade_configs"] = [{"upgrade_type": "websocket"}]
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def _listener(name, port, direction, filter_chains):
    """A listener that restores the original destination (iptables REDIRECTed the connection
    here) before choosing a filter chain, so chains can match the port the caller dialled.

    The traffic direction is what `/drain_listeners?inboundonly` selects by, as in Istio.
    """
    return {
        "name": name,
        "address": _address("0.0.0.0", port),
        "traffic_direction": direction,
        "listener_filters": [
            {
                "name": "envoy.filters.listener.original_dst",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
                },
            }
        ],
        "filter_chains": filter_chains,
    }


def inbound_cluster(port):
    """Istio's name for the cluster that forwards inbound traffic to the app's `port`."""
    return f"inbound|{port}||"


def bootstrap(layout, app_port, grpc_port, xds_port, init_delay):
    ports = LAYOUTS[layout]
    return {
        "node": {"id": "sidecar~10.89.0.2~app.pod~pod.svc.cluster.local", "cluster": "app.pod"},
        "admin": {"address": _address("127.0.0.1", ports["admin"])},
        # A connection limit, as Istio's bootstrap sets one (Envoy warns at start without it).
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 100000,
                    },
                }
            ]
        },
        "dynamic_resources": {
            "cds_config": {
                "resource_api_version": "V3",
                "initial_fetch_timeout": f"{init_delay:.3f}s",
                "api_config_source": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                },
            }
        },
        "static_resources": {
            "clusters": [
                _static_cluster("xds-grpc", "127.0.0.1", xds_port, http2=True),
                {
                    "name": "PassthroughCluster",
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "1s",
                    # Without it Envoy would call every upstream over HTTP/1.1, and a gRPC call
                    # (HTTP/2 only) would fail there; Istio's PassthroughCluster does the same.
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "use_downstream_protocol_config": {},
                        }
                    },
                },
                _static_cluster(inbound_cluster(app_port), "127.0.0.1", app_port),
                _static_cluster(inbound_cluster(grpc_port), "127.0.0.1", grpc_port, http2=True),
            ],
            "listeners": [
                _listener("outbound", ports["outbound"], "OUTBOUND",
                          [{"filters": [_hcm("outbound", "PassthroughCluster")]}]),
                _listener("inbound", ports["inbound"], "INBOUND", [
                    {"filter_chain_match": {"destination_port": grpc_port},
                     "filters": [_hcm(f"inbound_{grpc_port}", inbound_cluster(grpc_port))]},
                    {"filters": [_hcm(f"inbound_{app_port}", inbound_cluster(app_port),
                                      websocket=True)]},
                ]),
            ],
        },
    }


def write(path, layout, app_port, grpc_port, xds_port, init_delay):
    with open(path, "w") as f:
        json.dump(bootstrap(layout, app_port, grpc_port, xds_port, init_delay), f, indent=1)
