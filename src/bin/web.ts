import { main } from './run.ts';
main({ web: true, worker: false });
