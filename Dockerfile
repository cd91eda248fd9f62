# The control plane's image, used by docker-compose.yml for both `web` and `worker`. With the local compute
# provider the worker also runs each customer's runtime (runtime/) from this image, as a child process.
#
# The TypeScript is compiled in a build stage (npm run build) and the image runs the JavaScript with node itself:
# no compiler in memory (a worker idles at about 120 MB instead of 170 MB under tsx), a faster start, and SIGTERM
# reaches the process that drains (src/bin/run.ts) with nothing in between.
ARG BASE_IMAGE=node:24-slim
FROM ${BASE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY core ./core
COPY src ./src
COPY runtime ./runtime
RUN npm run build

FROM ${BASE_IMAGE}
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Only what runs. (`COPY . .` would also copy a host's node_modules/ and var/, dev secrets included.)
COPY --from=build /app/dist ./dist

# var/ holds generated development secrets, the mail outbox, workspaces and runtime logs.
RUN mkdir -p var && chown node:node var
USER node

EXPOSE 3000
CMD ["node", "dist/src/bin/start.js"]
