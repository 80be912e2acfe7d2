-- Azure SQL schema for the ResNet classifier's results (InferenceTasks, InferenceResults).
-- GENERATED from storage/models.py by `python -m storage.schema > database_schema.sql`;
-- do not edit by hand: tests/storage/test_schema.py fails when the two differ.
-- Datetimes are naive UTC (DATETIME2). The app creates missing tables itself at start-up
-- (storage.database.ensure_schema); this script is for DBAs provisioning the database.

CREATE TABLE [InferenceTasks] (
	[TaskID] INTEGER NOT NULL IDENTITY,
	[InstanceID] NVARCHAR(100) COLLATE Latin1_General_100_BIN2 NOT NULL,
	[ModelType] NVARCHAR(200) NOT NULL,
	[Status] NVARCHAR(32) NOT NULL,
	[TimestampF1] DATETIME2 NOT NULL,
	[ProcessingStartedAt] DATETIME2 NULL,
	[ProcessingFinishedAt] DATETIME2 NULL,
	[CompletedAt] DATETIME2 NOT NULL,
	[ImageCount] INTEGER NOT NULL,
	[Error] NVARCHAR(max) NULL,
	CONSTRAINT [PK_InferenceTasks] PRIMARY KEY ([TaskID]),
	CONSTRAINT [UQ_InferenceTasks_InstanceID] UNIQUE ([InstanceID])
);
GO

CREATE TABLE [InferenceResults] (
	[ResultID] INTEGER NOT NULL IDENTITY,
	[TaskID] INTEGER NOT NULL,
	[ImageIndex] INTEGER NOT NULL,
	[ImageName] NVARCHAR(2048) NOT NULL,
	[ModelType] NVARCHAR(50) NOT NULL,
	[Weights] NVARCHAR(200) NULL,
	[Label] NVARCHAR(200) NULL,
	[ClassIndex] INTEGER NULL,
	[Confidence] FLOAT NULL,
	[TopKJson] NVARCHAR(max) NOT NULL,
	[F2_StartTime] DATETIME2 NULL,
	[F2_EndTime] DATETIME2 NULL,
	[InferenceMs] FLOAT NULL,
	[Error] NVARCHAR(max) NULL,
	CONSTRAINT [PK_InferenceResults] PRIMARY KEY ([ResultID]),
	CONSTRAINT [UQ_InferenceResults_TaskID_ImageIndex_ModelType] UNIQUE ([TaskID], [ImageIndex], [ModelType]),
	CONSTRAINT [FK_InferenceResults_TaskID] FOREIGN KEY([TaskID]) REFERENCES [InferenceTasks] ([TaskID]) ON DELETE CASCADE
);
GO

CREATE INDEX [IX_InferenceResults_TaskID] ON [InferenceResults] ([TaskID]);
GO
