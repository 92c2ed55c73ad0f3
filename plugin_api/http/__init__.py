"""The HTTP service: app factory, thin routes, API schemas, services kept between requests, transport limits and the storefront page."""
