export {
  type ConformanceOptions,
  type ConformanceSubject,
  HOSTILE_KEYS,
  patternBytes,
  runTierConformance,
  type TestApi,
} from './conformance.js';
