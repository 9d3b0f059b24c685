#!/usr/bin/env node
// Checks the parts of a template that cfn-lint 1.9.x does not: the resource attributes
// (unknown keys, DependsOn and Condition targets, CreationPolicy/UpdatePolicy keys,
// DeletionPolicy values) and the condition names used by Outputs and by other conditions.
// Usage: node check-references.js TEMPLATE...   Exit 1 when any problem is found.
'use strict';

const { openFile } = require('cfn-lint/lib/parser');

const resourceKeys = new Set(['Type', 'Properties', 'DependsOn', 'Condition', 'CreationPolicy', 'UpdatePolicy',
  'DeletionPolicy', 'UpdateReplacePolicy', 'Metadata']);
const policyValues = new Set(['Delete', 'Retain', 'Snapshot', 'RetainExceptOnCreate']);
// Allowed keys, recursively, of the two policy attributes (AWS CloudFormation User Guide).
const creationPolicy = {
  ResourceSignal: { Count: null, Timeout: null },
  AutoScalingCreationPolicy: { MinSuccessfulInstancesPercent: null },
  StartFleet: null,
};
const updatePolicy = {
  AutoScalingRollingUpdate: {
    MaxBatchSize: null, MinActiveInstancesPercent: null, MinInstancesInService: null,
    MinSuccessfulInstancesPercent: null, PauseTime: null, SuspendProcesses: null, WaitOnResourceSignals: null,
  },
  AutoScalingReplacingUpdate: { WillReplace: null },
  AutoScalingScheduledAction: { IgnoreUnmodifiedGroupSizeProperties: null },
  CodeDeployLambdaAliasUpdate: null,
  EnableVersionUpgrade: null,
  UseOnlineResharding: null,
};

function checkKeys(value, allowed, where, problems) {
  if (allowed === null || value === null || typeof value !== 'object' || Array.isArray(value)) return;
  for (const key of Object.keys(value)) {
    if (!(key in allowed)) problems.push(`${where} > ${key}: not a valid key (expected one of ${Object.keys(allowed).join(', ')})`);
    else checkKeys(value[key], allowed[key], `${where} > ${key}`, problems);
  }
}

function conditionRefs(node, found) {
  if (Array.isArray(node)) node.forEach((n) => conditionRefs(n, found));
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'Condition' && typeof value === 'string') found.push(value);
      else conditionRefs(value, found);
    }
  }
  return found;
}

function check(file) {
  const problems = [];
  const template = openFile(file);
  const resources = template.Resources || {};
  const conditions = template.Conditions || {};
  for (const [name, definition] of Object.entries(conditions)) {
    for (const used of conditionRefs(definition, [])) {
      if (!(used in conditions)) problems.push(`Conditions > ${name}: condition '${used}' does not exist`);
    }
  }
  for (const [name, resource] of Object.entries(resources)) {
    const where = `Resources > ${name}`;
    for (const key of Object.keys(resource)) {
      if (!resourceKeys.has(key)) problems.push(`${where} > ${key}: not a valid resource attribute`);
    }
    const dependsOn = resource.DependsOn === undefined ? [] : [].concat(resource.DependsOn);
    for (const target of dependsOn) {
      if (typeof target !== 'string' || !(target in resources)) problems.push(`${where} > DependsOn: resource '${target}' does not exist`);
    }
    if (resource.Condition !== undefined && !(resource.Condition in conditions)) {
      problems.push(`${where} > Condition: condition '${resource.Condition}' does not exist`);
    }
    for (const key of ['DeletionPolicy', 'UpdateReplacePolicy']) {
      if (resource[key] !== undefined && !policyValues.has(resource[key])) problems.push(`${where} > ${key}: '${resource[key]}' is not a valid value`);
    }
    checkKeys(resource.CreationPolicy, creationPolicy, `${where} > CreationPolicy`, problems);
    checkKeys(resource.UpdatePolicy, updatePolicy, `${where} > UpdatePolicy`, problems);
  }
  for (const [name, output] of Object.entries(template.Outputs || {})) {
    if (output.Condition !== undefined && !(output.Condition in conditions)) {
      problems.push(`Outputs > ${name} > Condition: condition '${output.Condition}' does not exist`);
    }
  }
  return problems;
}

let failed = false;
for (const file of process.argv.slice(2)) {
  let problems;
  try {
    problems = check(file);
  } catch (error) {
    problems = [`cannot parse: ${error.message}`];
  }
  for (const problem of problems) console.log(`${file}: ${problem}`);
  if (problems.length > 0) failed = true;
}
process.exit(failed ? 1 : 0);
