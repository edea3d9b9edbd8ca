# Caddy with caddy-dingtalk, on the official images.
#
#   docker build -t caddy-dingtalk .
#   docker build --build-arg GOPROXY=https://goproxy.cn,direct -t caddy-dingtalk .
#
# The build runs deploy/build-caddy.sh, which CI runs as well. compose.yaml
# runs the image with Redis and an example backend.
ARG CADDY_VERSION=2.11.9

FROM caddy:${CADDY_VERSION}-builder AS builder
ARG CADDY_VERSION
# Where Go modules come from: a mirror where proxy.golang.org is slow or
# out of reach.
ARG GOPROXY=https://proxy.golang.org,direct
ENV GOPROXY=${GOPROXY}
WORKDIR /src
COPY . .
RUN CADDY_VERSION=v${CADDY_VERSION} deploy/build-caddy.sh /usr/bin/caddy

FROM caddy:${CADDY_VERSION}
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY deploy/Caddyfile /etc/caddy/Caddyfile
