export * from '../core/plans.ts';
