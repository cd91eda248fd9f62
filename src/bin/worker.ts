import { main } from './run.ts';
main({ web: false, worker: true });
