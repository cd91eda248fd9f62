# The control plane's image, used by docker-compose.yml for both `web` and `worker`. With the local compute
# provider the worker also runs each customer's runtime (runtime/) from this image, as a child process.
FROM node:20-slim

WORKDIR /app

# npm runs a script through `sh -c`. Debian's dash stays between npm and tsx and dies on SIGTERM without passing it
# on, so `docker stop` would cut the workers off. bash execs a lone command instead: npm's SIGTERM reaches tsx,
# tsx relays it to node, and the process drains (src/bin/run.ts) before it exits.
ENV npm_config_script_shell=/bin/bash

COPY package.json package-lock.json ./
# tsx is a production dependency: the TypeScript sources run as they are, nothing is compiled.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Only what runs. (`COPY . .` would also copy a host's node_modules/ and var/, dev secrets included.)
COPY tsconfig.json ./
COPY core ./core
COPY src ./src
COPY runtime ./runtime

# var/ holds generated development secrets, the mail outbox, workspaces and runtime logs.
RUN mkdir -p var && chown node:node var
USER node

EXPOSE 3000
CMD ["npm", "start"]
