//! The DynamoDB lease store: one item per shard, every write conditional on the lease counter (and owner), as the
//! KCL's lease table. Only this module names `aws_sdk_dynamodb` types; the table is created when missing.
//!
//! Item: `leaseKey` (S, the shard id, partition key), `leaseOwner` (S, absent when free), `leaseCounter` (N),
//! `checkpoint` (S: `TRIM_HORIZON`, `SHARD_END`, or a sequence number), `checkpointSubSequenceNumber` (N),
//! `parentShardIds` (L of S).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TableStatus,
};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

use super::{Checkpoint, Lease, LeaseError, LeaseStore};

const KEY: &str = "leaseKey";
const OWNER: &str = "leaseOwner";
const COUNTER: &str = "leaseCounter";
const CHECKPOINT: &str = "checkpoint";
const SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
const PARENTS: &str = "parentShardIds";

#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: Client,
    table: String,
}

fn store_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &str,
    e: SdkError<E, R>,
) -> LeaseError {
    LeaseError::Store(format!("{operation}: {}", DisplayErrorContext(e)))
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException")
}

/// A DynamoDB client from the AWS SDK configuration, with `interceptors` on every call.
pub fn client(sdk: &aws_types::SdkConfig, interceptors: &[SharedInterceptor]) -> Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    for i in interceptors {
        builder.push_interceptor(i.clone());
    }
    Client::from_conf(builder.build())
}

impl DynamoLeaseStore {
    /// Opens the lease table, creating it (on-demand capacity) when it does not exist.
    pub async fn open(client: Client, table: impl Into<String>) -> Result<Self, LeaseError> {
        let store = Self { client, table: table.into() };
        match store.client.describe_table().table_name(&store.table).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                store.create_table().await?
            }
            Err(e) => return Err(store_error("DescribeTable", e)),
        }
        Ok(store)
    }

    async fn create_table(&self) -> Result<(), LeaseError> {
        let key = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| LeaseError::Store(e.to_string()))?;
        let attr = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| LeaseError::Store(e.to_string()))?;
        match self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(attr)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
        {
            Ok(_) => {}
            // Another worker created it first.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(store_error("CreateTable", e)),
        }
        tracing::info!(table = %self.table, "Created the lease table.");
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| store_error("DescribeTable", e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(LeaseError::Store(format!("lease table {} did not become active within 60 s", self.table)))
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([(KEY.to_owned(), s(&lease.shard_id)), (COUNTER.to_owned(), n(lease.counter))]);
    if let Some(owner) = &lease.owner {
        item.insert(OWNER.to_owned(), s(owner));
    }
    let (checkpoint, sub) = lease.checkpoint.to_text();
    item.insert(CHECKPOINT.to_owned(), AttributeValue::S(checkpoint));
    item.insert(SUB_SEQUENCE.to_owned(), n(sub));
    item.insert(PARENTS.to_owned(), AttributeValue::L(lease.parents.iter().map(|p| s(p)).collect()));
    item
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
    let shard_id = text(KEY).ok_or_else(|| LeaseError::Store(format!("lease item without {KEY}: {item:?}")))?;
    let checkpoint = match text(CHECKPOINT) {
        None => Checkpoint::TrimHorizon,
        Some(text) => Checkpoint::from_text(&text, number(SUB_SEQUENCE).unwrap_or(0))?,
    };
    let parents = item
        .get(PARENTS)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|p| p.as_s().ok().cloned()).collect())
        .unwrap_or_default();
    Ok(Lease { shard_id, owner: text(OWNER), counter: number(COUNTER).unwrap_or(0), checkpoint, parents })
}

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    async fn get(&self, shard_id: &str) -> Result<Option<Lease>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(shard_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        out.item().map(from_item).transpose()
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Scan", e))?;
            for item in page.items() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(out)
    }

    async fn create_if_absent(&self, lease: Lease) -> Result<bool, LeaseError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&lease)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(store_error("PutItem", e)),
        }
    }

    async fn take(&self, shard_id: &str, expected: u64, owner: &str) -> Result<Lease, LeaseError> {
        let set = "SET #o = :owner, #c = #c + :one";
        let values = [(":owner", s(owner)), (":one", n(1))];
        self.update(shard_id, expected, set, "#c = :expected", &values).await
    }

    async fn renew(&self, shard_id: &str, owner: &str, expected: u64) -> Result<Lease, LeaseError> {
        let values = [(":owner", s(owner)), (":one", n(1))];
        self.update(shard_id, expected, "SET #c = #c + :one", "#c = :expected AND #o = :owner", &values).await
    }

    async fn checkpoint(
        &self,
        shard_id: &str,
        owner: &str,
        expected: u64,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError> {
        let item =
            to_item(&Lease { shard_id: shard_id.to_owned(), owner: None, counter: 0, checkpoint, parents: Vec::new() });
        let values = [(":owner", s(owner)), (":cp", item[CHECKPOINT].clone()), (":sub", item[SUB_SEQUENCE].clone())];
        let set = format!("SET {CHECKPOINT} = :cp, {SUB_SEQUENCE} = :sub");
        self.update(shard_id, expected, &set, "#c = :expected AND #o = :owner", &values).await.map(drop)
    }

    async fn release(&self, shard_id: &str, owner: &str, expected: u64) -> Result<(), LeaseError> {
        let values = [(":owner", s(owner)), (":one", n(1))];
        let set = "REMOVE #o SET #c = #c + :one";
        self.update(shard_id, expected, set, "#c = :expected AND #o = :owner", &values).await.map(drop)
    }
}

impl DynamoLeaseStore {
    /// One conditional UpdateItem on a lease: `#o` and `#c` name the owner and counter, `:expected` is the counter
    /// the writer last saw. A failed condition is a [`LeaseError::Conflict`]: the lease changed hands or moved on.
    async fn update(
        &self,
        shard_id: &str,
        expected: u64,
        set: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<Lease, LeaseError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(shard_id))
            .update_expression(set)
            .condition_expression(condition)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":expected", n(expected))
            .return_values(ReturnValue::AllNew);
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        match request.send().await {
            Ok(out) => from_item(out.attributes().unwrap_or(&HashMap::new())),
            Err(e) if is_conditional_failure(&e) => {
                Err(LeaseError::Conflict { shard_id: shard_id.to_owned(), expected })
            }
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }
}
