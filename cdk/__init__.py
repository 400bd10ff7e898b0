"""CDK constructs and the stack: HybridEndpoint, RoutingController, HybridEndpointStack."""
