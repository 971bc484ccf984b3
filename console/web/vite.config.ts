import { defineConfig } from 'vite';

// The query API serves the built console at /console/ and answers the API calls on the same
// origin. Every URL is relative (assets to the page, API calls to the page's parent), so the
// console also works behind a path prefix such as the Kubernetes ingress's /api/queries/. In development (`npm run dev`) Vite serves the pages and passes the API calls on
// to a running query API (KEEL_QUERY_URL, default the local stack's).
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const queryApi = env.KEEL_QUERY_URL ?? 'http://127.0.0.1:8090';

export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    strictPort: true,
    proxy: {
      '/console/api': { target: queryApi, changeOrigin: false },
      '/audit': { target: queryApi, changeOrigin: false },
    },
  },
});
